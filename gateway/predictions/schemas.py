"""Predictions and their reviews as API consumers see them in `/openapi.json`. A review is
checked against these before the data service is called; answers are documented with them.
`HeatmapFocus` is the one definition of where a Grad-CAM map concentrates: the assistant
reads a stored prediction's summary with it too.

The assessment's codes mirror `ml.assessment` (which the gateway's image does not hold);
tests/unit/gateway/test_assessment_codes.py checks that they agree."""

import uuid
from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

Label = Literal["benign", "malignant"]
Assessment = Literal["assessable", "indeterminate", "not_assessable"]
Reason = Literal[
    "no_tissue",
    "out_of_focus",
    "not_h_and_e",
    "pen_or_artefact",
    "exposure",
    "out_of_distribution",
    "near_threshold",
]
ASSESSMENTS: tuple[str, ...] = get_args(Assessment)
REASONS: tuple[str, ...] = get_args(Reason)
# Listing orders: newest first, or the review queue's.
Order = Literal["newest", "review_priority"]


class Check(BaseModel):
    measure: str = Field(examples=["tissue_fraction"])
    value: float = Field(description="What was measured on the image")
    limit: float = Field(description="The site's limit for it")
    comparison: Literal["at_least", "at_most"] = Field(
        description="`value` passes when it is at least, or at most, `limit`"
    )
    reason: Reason = Field(description="What a failure of this check means")
    passed: bool


class HeatmapFocus(BaseModel):
    region: str | None = Field(
        description="Where the strongest hot area's weighted centre lies on a 3 x 3 grid",
        examples=["upper left"],
    )
    peak_region: str | None = Field(description="The grid cell of the strongest activation")
    hot_area_fraction: float = Field(
        ge=0, le=1, description="Share of the image at or above half the peak activation"
    )
    spread: Literal["focal", "moderate", "diffuse", "none"]
    areas: int = Field(
        default=1, ge=0, description="Separate hot areas; `region` is the strongest's"
    )


class Prediction(BaseModel):
    id: uuid.UUID
    image_id: uuid.UUID = Field(description="The analysed image: GET .../{id}/image")
    patient_id: uuid.UUID | None
    model_version: str = Field(examples=["demo-synthetic-1"])
    label: Label | None = Field(
        description="The model's verdict at its decision threshold; null when the image could "
        "not be assessed"
    )
    probability: float | None = Field(
        ge=0, le=1, description="The model's probability of `label`; null without a label"
    )
    probabilities: dict[str, float] = Field(
        examples=[{"benign": 0.08, "malignant": 0.92}],
        description="Calibrated class probabilities, kept for audit even without a label",
    )
    threshold: float = Field(description="P(malignant) at or above which the label is malignant")
    latency_ms: float = Field(description="Model time for this image")
    heatmap_ref: str | None = Field(
        description="Set when a Grad-CAM overlay was stored: GET .../{id}/heatmap"
    )
    heatmap_focus: HeatmapFocus | None = Field(
        default=None, description="Where the Grad-CAM map concentrates, with the overlay"
    )
    assessment: Assessment | None = Field(
        default=None,
        description="Whether the image could be assessed: `indeterminate` has a label that is "
        "not decided (too close to the threshold, or unlike the training data), "
        "`not_assessable` none; null for predictions stored before assessments were recorded",
    )
    reasons: list[Reason] | None = Field(
        default=None, description="Why, in order: the reason of every failed check"
    )
    checks: list[Check] | None = Field(
        default=None, description="The measures behind the assessment, each with its limit"
    )
    requested_by: uuid.UUID
    created_at: datetime
    reviewed: bool = Field(description="Whether a clinician has reviewed it")


class PredictionPage(BaseModel):
    items: list[Prediction]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class ReviewCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"verdict": "agree", "comment": "Consistent with the slide."},
                {"verdict": "disagree", "corrected_label": "benign"},
            ]
        },
    )

    verdict: Literal["agree", "disagree"]
    corrected_label: Label | None = Field(default=None, description="Required to disagree")
    comment: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _correction_goes_with_disagreement(self) -> "ReviewCreate":
        if (self.verdict == "disagree") != (self.corrected_label is not None):
            raise ValueError("corrected_label is required to disagree and refused to agree")
        return self


class Review(BaseModel):
    id: uuid.UUID
    prediction_id: uuid.UUID
    reviewer: uuid.UUID
    verdict: Literal["agree", "disagree"]
    corrected_label: str | None
    comment: str | None
    is_current: bool = Field(description="False once a later review replaced it")
    created_at: datetime
