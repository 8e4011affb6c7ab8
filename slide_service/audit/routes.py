from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from common.audit import AuditEventOut
from common.db import SessionDep
from slide_service.audit import service
from slide_service.deps import Admin, SettingsDep, page_limit

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    total: int
    limit: int
    offset: int


@router.get("", response_model=AuditPage, summary="Audit events of slides, newest first (admin)")
async def audit_events(
    _: Admin,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditPage:
    limit = page_limit(limit, settings.max_page_size)
    events = await service.trail.events(session, None, None, None, limit, offset)
    total = await service.trail.count(session)
    return AuditPage(
        items=[AuditEventOut.model_validate(e) for e in events],
        total=total,
        limit=limit,
        offset=offset,
    )
