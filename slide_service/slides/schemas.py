import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class Level(BaseModel):
    width: int
    height: int
    downsample: float


class SlideOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    patient_id: uuid.UUID
    filename: str
    format: str
    width: int
    height: int
    level_count: int
    levels: list[Level]
    microns_per_pixel_x: float | None
    microns_per_pixel_y: float | None
    # "unknown": analysis must not run at an assumed scale.
    resolution_source: Literal["file", "uploader", "unknown"]
    objective_power: float | None
    associated_images: list[str]
    size_bytes: int
    sha256: str
    uploaded_by: uuid.UUID
    created_at: datetime


class SlidePage(BaseModel):
    items: list[SlideOut]
    total: int
    limit: int
    offset: int
