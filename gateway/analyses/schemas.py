"""Slide analyses and their reviews as API consumers see them in `/openapi.json`: the slide
service's answers, which the gateway relays as they are, documented with these."""

import uuid
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

COMMENT_MAX = 2000


class Progress(BaseModel):
    tiles_done: int
    tiles_total: int | None = Field(description="Tissue tiles; null until the mask is made")
    fraction: float | None
    tiles_per_s: float | None
    eta_s: float | None = Field(description="Seconds left at the current rate")


class AnalysisError(BaseModel):
    code: str
    message: str


class Analysis(BaseModel):
    id: uuid.UUID
    slide_id: uuid.UUID
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    requested_by: uuid.UUID
    model_version: str | None
    threshold: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    progress: Progress
    scale: dict[str, float | int] | None = Field(
        description="model_microns_per_pixel, patch_px, slide_microns_per_pixel, tile_px_level0"
    )
    grid: dict[str, int] | None = Field(description="cols and rows of the tile grid")
    error: AnalysisError | None
    summary: dict[str, Any] | None = Field(
        description="tiles_assessed, tiles_skipped, background_tiles, tumour_area_fraction, "
        "tumour_area_mm2, tissue_area_mm2, regions, highest_region, model_version, threshold"
    )


class AnalysisStats(BaseModel):
    slides_analysed: int
    analyses: dict[str, int] = Field(description="Analyses by status")
    tiles_analysed: int
    tiles_per_s: float | None


class TopTile(BaseModel):
    rank: int
    x: int
    y: int
    size: int
    probability: float
    has_gradcam: bool


class RegionReview(BaseModel):
    id: uuid.UUID
    reviewer: uuid.UUID
    verdict: Literal["agree", "correct", "dismiss"]
    corrected_label: Literal["benign", "malignant"] | None
    comment: str | None
    created_at: datetime


class Region(BaseModel):
    id: uuid.UUID
    rank: int
    area_mm2: float
    peak_probability: float
    mean_probability: float
    tile_count: int
    bounds: dict[str, int] = Field(description="x, y, width, height in level-0 pixels")
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon, level-0 px")
    top_tiles: list[TopTile]
    review: RegionReview | None = Field(description="The newest review")


class RegionReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["agree", "correct", "dismiss"] = Field(
        description="agree: the region is malignant; correct: it is `corrected_label`; "
        "dismiss: not a region worth a label"
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


class RegionReviewEntry(RegionReview):
    region_id: uuid.UUID
    region_rank: int


class SlideReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["benign", "malignant", "indeterminate"]
    comment: str | None = Field(default=None, max_length=COMMENT_MAX)


class SlideReview(BaseModel):
    id: uuid.UUID
    analysis_id: uuid.UUID
    reviewer: uuid.UUID
    verdict: Literal["benign", "malignant", "indeterminate"]
    comment: str | None
    created_at: datetime


class AnalysisReviews(BaseModel):
    slide_reviews: list[SlideReview]
    region_reviews: list[RegionReviewEntry]


class ReviewQueueItem(BaseModel):
    analysis_id: uuid.UUID
    slide_id: uuid.UUID
    filename: str
    model_version: str | None
    finished_at: datetime | None
    highest_region: dict[str, Any] | None
    tumour_area_fraction: float | None


class ReviewQueuePage(BaseModel):
    items: list[ReviewQueueItem]
    total: int
    limit: int
    offset: int
