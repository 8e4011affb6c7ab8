import uuid
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slide_service.analyses.schemas import RegionReviewOut

COMMENT_MAX = 2000


class RegionReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["agree", "correct", "dismiss"] = Field(
        description="agree: the region is malignant; correct: it is `corrected_label`; "
        "dismiss: not a region worth a label (artefact, out of focus...)"
    )
    corrected_label: Literal["benign", "malignant"] | None = Field(
        default=None, description="Required with `correct`, and only with it"
    )
    comment: str | None = Field(default=None, max_length=COMMENT_MAX)

    @model_validator(mode="after")
    def _label_with_correct(self) -> Self:
        if (self.verdict == "correct") != (self.corrected_label is not None):
            raise ValueError("corrected_label is required with verdict 'correct', and only then")
        return self


class SlideReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["benign", "malignant", "indeterminate"]
    comment: str | None = Field(default=None, max_length=COMMENT_MAX)


class RegionReviewEntry(RegionReviewOut):
    """A region's review, with the region it is of."""

    region_id: uuid.UUID
    region_rank: int


class SlideReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    analysis_id: uuid.UUID
    reviewer: uuid.UUID
    verdict: Literal["benign", "malignant", "indeterminate"]
    comment: str | None
    created_at: datetime


class AnalysisReviewsOut(BaseModel):
    """Every review given on an analysis, newest first: history is kept, the newest counts."""

    slide_reviews: list[SlideReviewOut]
    region_reviews: list[RegionReviewEntry]


class QueueItem(BaseModel):
    analysis_id: uuid.UUID
    slide_id: uuid.UUID
    filename: str
    model_version: str | None
    finished_at: datetime | None
    highest_region: dict[str, Any] | None = Field(
        description="id, rank and peak_probability of the region with the highest peak"
    )
    tumour_area_fraction: float | None


class ReviewQueuePage(BaseModel):
    items: list[QueueItem]
    total: int
    limit: int
    offset: int
