from typing import Annotated

from fastapi import APIRouter, Query

from common.db import SessionDep
from data_service.audit import service
from data_service.audit.schemas import AuditEventOut
from data_service.deps import Admin

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=list[AuditEventOut], summary="Audit events, newest first (admin)")
async def audit_events(
    _: Admin,
    session: SessionDep,
    resource_type: Annotated[str | None, Query(max_length=32)] = None,
    resource_id: Annotated[str | None, Query(max_length=64)] = None,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditEventOut]:
    events = await service.trail.events(session, resource_type, resource_id, before_id, limit)
    return [AuditEventOut.model_validate(e) for e in events]
