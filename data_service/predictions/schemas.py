import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# One definition of the outcome codes, shared with the inference service and training
# (standard library only: the data service's image holds `ml/`).
from ml.assessment import Assessment, Reason


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


# What the statistics and the export say of predictions stored before assessments were.
NOT_RECORDED = "not_recorded"
# Listing orders: newest first, or the review queue's (indeterminate predictions and those a
# reviewer disagreed with first, each group newest first).
Order = Literal["newest", "review_priority"]

# An image has a handful of checks (quality measures, the model's own); a body with far more
# is not from the inference service.
MAX_CHECKS = 32
# Names of measures: lower-case words (`tissue_fraction`, `out_of_distribution_score`).
MEASURE = r"^[a-z][a-z0-9_]{0,63}$"


class Check(BaseModel):
    """One measure of the image against its limit (`ml.assessment.Check.as_dict()`)."""

    model_config = ConfigDict(extra="forbid")

    measure: str = Field(pattern=MEASURE)
    # Numbers and a boolean as such: text is not read as one.
    value: float = Field(strict=True, allow_inf_nan=False)
    limit: float = Field(strict=True, allow_inf_nan=False)
    comparison: Literal["at_least", "at_most"]
    reason: Reason
    passed: bool = Field(strict=True)

    @model_validator(mode="after")
    def _passed_follows_from_the_measure(self) -> "Check":
        at_limit = (
            self.value >= self.limit
            if self.comparison == "at_least"
            else (self.value <= self.limit)
        )
        if self.passed != at_limit:
            raise ValueError(f"passed contradicts {self.measure} against its limit")
        return self


class ModelPrediction(BaseModel):
    """What the model said of an image, as the gateway passes it on (the prediction part of
    `POST /predictions/with-images`, which stores the image with it)."""

    model_config = ConfigDict(extra="forbid")

    model_version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    # No label (and no probability of one) exactly when the image was not assessable.
    label: Label | None
    probability: float | None = Field(ge=0, le=1)
    probabilities: dict[Label, float]
    threshold: float = Field(ge=0, le=1)
    latency_ms: float = Field(ge=0)
    heatmap_focus: HeatmapFocus | None = None
    assessment: Assessment
    reasons: list[Reason] = Field(max_length=len(Reason))
    checks: list[Check] = Field(max_length=MAX_CHECKS)

    @model_validator(mode="after")
    def _every_class_once(self) -> "ModelPrediction":
        if set(self.probabilities) != set(LABELS):
            raise ValueError(f"probabilities must give each class: {', '.join(LABELS)}")
        if any(not 0 <= p <= 1 for p in self.probabilities.values()):
            raise ValueError("probabilities must lie between 0 and 1")
        return self

    @model_validator(mode="after")
    def _a_label_exactly_when_assessable(self) -> "ModelPrediction":
        not_assessable = self.assessment is Assessment.NOT_ASSESSABLE
        if not_assessable and self.label is not None:
            raise ValueError("a not_assessable prediction takes no label")
        if not not_assessable and self.label is None:
            raise ValueError(f"an {self.assessment.value} prediction needs its label")
        if (self.probability is None) != (self.label is None):
            raise ValueError("probability is the label's: given exactly when the label is")
        if len(set(self.reasons)) != len(self.reasons):
            raise ValueError("each reason is given once")
        if self.assessment is not Assessment.ASSESSABLE and not self.reasons:
            raise ValueError(f"an {self.assessment.value} prediction needs its reasons")
        return self


class PredictionCreate(ModelPrediction):
    """What the gateway stores after the model answered, of an image stored before (only
    the gateway may: see `deps.GatewayCall`)."""

    image_id: uuid.UUID
    # The stored image of the Grad-CAM overlay, of the same patient as `image_id`.
    heatmap_ref: uuid.UUID | None = None


class PredictionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    image_id: uuid.UUID
    patient_id: uuid.UUID | None
    model_version: str
    label: str | None
    probability: float | None
    probabilities: dict[str, float]
    threshold: float
    latency_ms: float
    heatmap_ref: uuid.UUID | None
    heatmap_focus: HeatmapFocus | None = None
    # None on predictions stored before assessments were recorded.
    assessment: Assessment | None = None
    reasons: list[Reason] | None = None
    checks: list[Check] | None = None
    requested_by: uuid.UUID
    created_at: datetime
    reviewed: bool = False


class PredictionPage(BaseModel):
    items: list[PredictionOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")
