"""The registry's request and response shapes; the model card itself is `ml.card.ModelCard`,
the schema training writes."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        min_length=1,
        max_length=1024,
        description="The version folder, relative to the models folder (or absolute inside it).",
    )
    activate: bool = False


class ModelVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: str
    status: str
    classes: list[str]
    input_shape: list[int]
    metrics: dict[str, Any]
    checksum_sha256: str
    created_by: str | None
    created_at: datetime
    activated_by: str | None
    activated_at: datetime | None


class ModelVersionDetail(ModelVersionOut):
    path: str
    card: dict[str, Any]
    reports: dict[str, Any] = Field(
        default_factory=dict, description="The training run's reports named by the card."
    )
    figures: list[str] = Field(
        default_factory=list,
        description="PNG figures of the training run, for GET /models/{version}/figures/{path}",
    )
