"""The audit trail: one event per write, in the same transaction as the write."""

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.logging import current_request_id
from data_service.audit.models import AuditEvent


async def record(
    session: AsyncSession,
    actor: str | uuid.UUID | None,
    action: str,
    resource_type: str,
    resource_id: object,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        actor=uuid.UUID(str(actor)) if actor else None,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id),
        request_id=current_request_id(),
        details=details or {},
    )
    session.add(event)
    return event


async def list_events(
    session: AsyncSession,
    resource_type: str | None,
    resource_id: str | None,
    before_id: int | None,
    limit: int,
) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if resource_type:
        query = query.where(AuditEvent.resource_type == resource_type)
    if resource_id:
        query = query.where(AuditEvent.resource_id == resource_id)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return list(await session.scalars(query))
