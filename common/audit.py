"""The append-only audit trail every service with a database keeps in its own table: the
columns (a mixin for the service's declarative base), adding an event in the caller's
transaction, reading them newest first, their JSON shape, and the triggers that refuse to
change, delete or truncate them (for the service's migrations)."""

import uuid
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_serializer
from sqlalchemy import BigInteger, DateTime, String, func, select
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from common.logging import current_request_id


class AuditEventColumns:
    """Who did what to which resource; rows are never changed or deleted (a trigger refuses)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    actor: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), index=True)
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


Event = TypeVar("Event", bound=AuditEventColumns)


class AuditTrail(Generic[Event]):
    """A service's trail, kept in its table `model`."""

    def __init__(self, model: type[Event]) -> None:
        self.model = model

    async def record(
        self,
        session: AsyncSession,
        actor: str | uuid.UUID | None,
        action: str,
        resource_type: str,
        resource_id: object,
        details: dict[str, Any] | None = None,
    ) -> Event:
        """Add one event to the session: it commits (or not) with the write it records."""
        event = self.model()
        event.actor = uuid.UUID(str(actor)) if actor else None
        event.action = action
        event.resource_type = resource_type
        event.resource_id = str(resource_id)
        event.request_id = current_request_id()
        event.details = details or {}
        session.add(event)
        return event

    async def events(
        self,
        session: AsyncSession,
        resource_type: str | None,
        resource_id: str | None,
        before_id: int | None,
        limit: int,
        offset: int = 0,
    ) -> list[Event]:
        """Newest first."""
        model = self.model
        query = select(model).order_by(model.id.desc()).limit(limit).offset(offset)
        if resource_type:
            query = query.where(model.resource_type == resource_type)
        if resource_id:
            query = query.where(model.resource_id == resource_id)
        if before_id is not None:
            query = query.where(model.id < before_id)
        return list(await session.scalars(query))

    async def count(self, session: AsyncSession) -> int:
        return await session.scalar(select(func.count()).select_from(self.model)) or 0


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime = Field(json_schema_extra={"format": "date-time"})
    actor: uuid.UUID | None
    action: str
    resource_type: str
    resource_id: str
    request_id: str | None
    details: dict[str, Any]

    @field_serializer("at")
    def _at_with_offset(self, at: datetime) -> str:
        # The trail has always written UTC as +00:00 (isoformat); pydantic would write Z.
        return at.isoformat()


def append_only_guard_sql(table: str) -> list[str]:
    """SQL that makes `table` append-only, for the owner too: a row trigger refuses UPDATE
    and DELETE, a statement trigger TRUNCATE (row triggers do not fire on it)."""
    return [
        f"""CREATE FUNCTION {table}_append_only() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION '{table} is append-only';
        END;
        $$ LANGUAGE plpgsql""",
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()",
    ]


def drop_append_only_guard_sql(table: str) -> list[str]:
    return [
        f"DROP TRIGGER {table}_no_truncate ON {table}",
        f"DROP TRIGGER {table}_append_only ON {table}",
        f"DROP FUNCTION {table}_append_only()",
    ]
