import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class HeatmapFocus(BaseModel):
    """Where the Grad-CAM map concentrates, as the inference service summarised it."""

    model_config = ConfigDict(extra="forbid")

    region: str | None = Field(max_length=32)
    peak_region: str | None = Field(max_length=32)
    hot_area_fraction: float = Field(ge=0, le=1)
    spread: Literal["focal", "moderate", "diffuse", "none"]
    areas: int = Field(default=1, ge=0)


# The classes every model version predicts (ml.datasets.CLASSES, a model card's `classes`).
Label = Literal["benign", "malignant"]
LABELS: tuple[Label, ...] = ("benign", "malignant")


class PredictionCreate(BaseModel):
    """What the gateway stores after the model answered (only the gateway may: see
    `deps.GatewayCall`)."""

    model_config = ConfigDict(extra="forbid")

    image_id: uuid.UUID
    model_version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    label: Label
    probability: float = Field(ge=0, le=1)
    probabilities: dict[Label, float]
    threshold: float = Field(ge=0, le=1)
    latency_ms: float = Field(ge=0)
    # The stored image of the Grad-CAM overlay, of the same patient as `image_id`.
    heatmap_ref: uuid.UUID | None = None
    heatmap_focus: HeatmapFocus | None = None

    @model_validator(mode="after")
    def _every_class_once(self) -> "PredictionCreate":
        if set(self.probabilities) != set(LABELS):
            raise ValueError(f"probabilities must give each class: {', '.join(LABELS)}")
        if any(not 0 <= p <= 1 for p in self.probabilities.values()):
            raise ValueError("probabilities must lie between 0 and 1")
        return self


class PredictionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    image_id: uuid.UUID
    patient_id: uuid.UUID | None
    model_version: str
    label: str
    probability: float
    probabilities: dict[str, float]
    threshold: float
    latency_ms: float
    heatmap_ref: uuid.UUID | None
    heatmap_focus: HeatmapFocus | None = None
    requested_by: uuid.UUID
    created_at: datetime
    reviewed: bool = False


class PredictionPage(BaseModel):
    items: list[PredictionOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")
