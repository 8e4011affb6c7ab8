import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ExplanationRecord(BaseModel):
    """One assistant exchange, as the gateway saw it: never the prompt, the answer or a
    provider's key, only what identifies and measures them."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["explanation", "follow_up"]
    provider: str = Field(min_length=1, max_length=32, description="Who produced the answer")
    model: str | None = Field(default=None, max_length=128)
    prompt_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    latency_ms: float = Field(ge=0)
    replaced: bool = Field(description="A provider's answer was replaced by the offline one")
    replaced_reason: str | None = Field(default=None, max_length=64)
    attempted_provider: str | None = Field(default=None, max_length=32)
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)


class ExplanationRecorded(BaseModel):
    audit_event_id: int
    prediction_id: uuid.UUID
    at: datetime
