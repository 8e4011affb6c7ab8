"""Slides as API consumers see them in `/openapi.json`: the slide service's answers, which
the gateway relays as they are, documented with these."""

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class SlideLevel(BaseModel):
    width: int
    height: int
    downsample: float


class Slide(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    filename: str
    format: str = Field(
        description="OpenSlide's vendor name", examples=["aperio", "generic-tiff", "dicom"]
    )
    width: int
    height: int
    level_count: int
    levels: list[SlideLevel]
    microns_per_pixel_x: float | None = Field(description="null when unknown")
    microns_per_pixel_y: float | None = Field(description="null when unknown")
    resolution_source: Literal["file", "uploader", "unknown"] = Field(
        description="Where the microns per pixel come from; `unknown`: no analysis may assume one"
    )
    objective_power: float | None
    associated_images: list[str] = Field(examples=[["label", "macro", "thumbnail"]])
    size_bytes: int
    sha256: str
    uploaded_by: str
    created_at: datetime


class SlidePage(BaseModel):
    items: list[Slide]
    total: int
    limit: int
    offset: int


class ViewLink(BaseModel):
    """A read-only grant for one slide's deep-zoom descriptor and tiles, expiring in minutes:
    a viewer loads them with these URLs, without the bearer token."""

    grant: str
    expires_at: datetime
    dzi_url: str = Field(examples=["/api/v1/slides/{id}/dzi?grant=..."])
    tile_url_template: str = Field(
        examples=["/api/v1/slides/{id}/tiles/{level}/{col}_{row}.jpeg?grant=..."]
    )
