from datetime import datetime

from fastapi import APIRouter

from common.db import SessionDep
from data_service.deps import Reader
from data_service.stats import service
from data_service.stats.schemas import Stats

router = APIRouter(prefix="/stats", tags=["stats"])


@router.get(
    "",
    response_model=Stats,
    summary="Counts by label, day and model version; review agreement; mean latency",
)
async def stats(
    _: Reader,
    session: SessionDep,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> Stats:
    return await service.summary(session, created_from, created_to)
