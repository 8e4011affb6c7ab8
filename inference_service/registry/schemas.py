from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ModelCard(BaseModel):
    """The fields of `model_card.json` the service relies on; others are kept as they are."""

    model_config = ConfigDict(extra="allow")

    version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    created_at: datetime
    model_file: str = Field(pattern=r"^[A-Za-z0-9._-]+\.keras$")
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    classes: list[str] = Field(min_length=2, max_length=2)
    input: dict[str, Any]
    decision_threshold: float = Field(ge=0, le=1)
    metrics: dict[str, Any]
    intended_use: str
    warning: str

    @field_validator("input")
    @classmethod
    def _square_rgb(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = value.get("size")
        if not (
            isinstance(size, list)
            and len(size) == 3
            and size[0] == size[1]
            and size[2] == 3
            and isinstance(size[0], int)
            and size[0] > 0
        ):
            raise ValueError("input.size must be [side, side, 3]")
        return value


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
