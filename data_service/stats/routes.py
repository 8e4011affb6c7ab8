from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from common.db import SessionDep
from common.errors import ServiceError
from data_service.audit import service as audit
from data_service.deps import Admin, Reader
from data_service.exports.service import reviewed_labels_csv
from data_service.stats.service import summary

router = APIRouter()


@router.get(
    "/stats",
    tags=["stats"],
    summary="Counts by label, day and model version; review agreement; mean latency",
)
async def stats(
    _: Reader,
    session: SessionDep,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> dict[str, Any]:
    if created_from and created_to and created_from > created_to:
        raise ServiceError(
            422, "created_from must not be after created_to.", code="validation_error"
        )
    return await summary(session, created_from, created_to)


@router.get(
    "/exports/labels",
    tags=["exports"],
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/csv": {}}}},
    summary="Reviewed labels as CSV (admin)",
)
async def export_labels(admin: Admin, session: SessionDep) -> PlainTextResponse:
    text = await reviewed_labels_csv(session, admin.subject)
    await session.commit()
    return PlainTextResponse(
        text,
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="reviewed-labels.csv"'},
    )


@router.get("/audit", tags=["audit"], summary="Audit events, newest first (admin)")
async def audit_events(
    _: Admin,
    session: SessionDep,
    resource_type: Annotated[str | None, Query(max_length=32)] = None,
    resource_id: Annotated[str | None, Query(max_length=64)] = None,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    events = await audit.list_events(session, resource_type, resource_id, before_id, limit)
    return [
        {
            "id": e.id,
            "at": e.at.isoformat(),
            "actor": str(e.actor) if e.actor else None,
            "action": e.action,
            "resource_type": e.resource_type,
            "resource_id": e.resource_id,
            "request_id": e.request_id,
            "details": e.details,
        }
        for e in events
    ]
