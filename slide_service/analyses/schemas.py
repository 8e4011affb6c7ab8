import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ProgressOut(BaseModel):
    tiles_done: int
    tiles_total: int | None = Field(description="Tissue tiles; null until the mask is made")
    fraction: float | None
    tiles_per_s: float | None = Field(description="Of the current attempt")
    eta_s: float | None = Field(description="Seconds left at the current rate")


class ErrorOut(BaseModel):
    code: str
    message: str


class AnalysisOut(BaseModel):
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
    progress: ProgressOut
    scale: dict[str, float | int] | None = Field(
        description="The model's µm/px and patch side, the slide's µm/px, the tile side at level 0"
    )
    grid: dict[str, int] | None = Field(description="Columns and rows of the tile grid")
    error: ErrorOut | None = Field(
        description="Why it failed; while queued, why it waits to try again"
    )
    summary: dict[str, Any] | None


class TopTileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    rank: int
    x: int
    y: int
    size: int
    probability: float
    has_gradcam: bool


class RegionReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    reviewer: uuid.UUID
    verdict: Literal["agree", "correct", "dismiss"]
    corrected_label: Literal["benign", "malignant"] | None
    comment: str | None
    created_at: datetime


class RegionOut(BaseModel):
    id: uuid.UUID
    rank: int
    area_mm2: float
    peak_probability: float
    mean_probability: float
    tile_count: int
    bounds: dict[str, int] = Field(description="x, y, width, height in level-0 pixels")
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon, level-0 px")
    top_tiles: list[TopTileOut]
    review: RegionReviewOut | None = Field(description="The newest review")


class AnalysisStatsOut(BaseModel):
    slides_analysed: int
    analyses: dict[str, int]
    tiles_analysed: int
    tiles_per_s: float | None = Field(description="Median of the last 20 succeeded analyses")
