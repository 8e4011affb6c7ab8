import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer


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
