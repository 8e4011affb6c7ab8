import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Float, Integer, String, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from slide_service.database import Base


class Slide(Base):
    """One upload of a slide: who sent it, for which patient, when, and what OpenSlide read
    from it. The file is stored once per content (its folder is named by the SHA-256 of the
    uploaded bytes); several uploads of the same bytes keep their own records."""

    __tablename__ = "slides"
    __table_args__ = (
        CheckConstraint(
            "resolution_source IN ('file', 'uploader', 'unknown')", name="resolution_source_known"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    # The patient lives in the data service (the gateway checks it exists): no foreign key.
    patient_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(32))
    # Not unique: each upload has its own record; the last one to go takes the file.
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # The file OpenSlide opens, relative to the storage folder (never the client's name).
    content_path: Mapped[str] = mapped_column(String(512))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    level_count: Mapped[int] = mapped_column(Integer)
    levels: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    microns_per_pixel_x: Mapped[float | None] = mapped_column(Float)
    microns_per_pixel_y: Mapped[float | None] = mapped_column(Float)
    resolution_source: Mapped[str] = mapped_column(String(16))
    objective_power: Mapped[float | None] = mapped_column(Float)
    associated_images: Mapped[list[str]] = mapped_column(JSONB)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    uploaded_by: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
