"""Tables of slide analyses: the job's record and progress, its checkpoints, its results (one
array per slide, not a row per tile), its suspicious regions with their top tiles, and the
clinicians' reviews of regions and of the slide."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from slide_service.database import Base

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "running")
REGION_VERDICTS = ("agree", "correct", "dismiss")
SLIDE_VERDICTS = ("benign", "malignant", "indeterminate")
LABELS = ("benign", "malignant")


class Analysis(Base):
    """One run of the model over a slide. The grid (tile side at level 0 and the tiles over
    tissue, in row-major order) is fixed when the job first runs, so a job resumed on another
    worker cuts exactly the same tiles."""

    __tablename__ = "analyses"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name="status_known",
        ),
        CheckConstraint("tiles_done >= 0", name="tiles_done_not_negative"),
        # At most one analysis of a slide waits or runs at a time.
        Index(
            "uq_analyses_active_slide",
            "slide_id",
            unique=True,
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        Index("ix_analyses_requested_by_status", "requested_by", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    slide_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("slides.id", ondelete="CASCADE"), index=True
    )
    requested_by: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    # The procrastinate job that runs it (cancelling goes through it).
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    model_version: Mapped[str | None] = mapped_column(String(64))
    threshold: Mapped[float | None] = mapped_column(Float)
    # The scale: the model's µm/px and patch side, the slide's µm/px, the tile side at level 0.
    scale: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # Grid of tiles over the slide (columns, rows) and the tissue mask it was cut from.
    grid_cols: Mapped[int | None] = mapped_column(Integer)
    grid_rows: Mapped[int | None] = mapped_column(Integer)
    tiles_total: Mapped[int | None] = mapped_column(Integer)
    tiles_done: Mapped[int] = mapped_column(Integer, default=0)
    # Tiles over tissue that the quality checks refused, by reason.
    skipped: Mapped[dict[str, int]] = mapped_column(JSONB, default=dict)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When this attempt began counting tiles, and how many were done then: the rate and ETA
    # are of this attempt, not diluted by the time a job waited or a dead worker held it.
    rate_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rate_base: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class AnalysisMask(Base):
    """The tissue mask and the tile grid of an analysis: written once, before any tile."""

    __tablename__ = "analysis_masks"

    analysis_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), primary_key=True
    )
    # The mask as a PNG (one pixel per `mask_downsample` level-0 pixels).
    mask_png: Mapped[bytes] = mapped_column(LargeBinary)
    mask_downsample: Mapped[float] = mapped_column(Float)
    # Indices (row * cols + col) of the tiles over tissue, uint32 little-endian, ascending.
    tissue_tiles: Mapped[bytes] = mapped_column(LargeBinary)


class AnalysisChunk(Base):
    """A checkpoint: the results of one batch of tissue tiles. Its primary key makes each
    batch count once, whichever worker writes it; they are folded into `AnalysisResult` when
    the analysis ends."""

    __tablename__ = "analysis_chunks"

    analysis_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), primary_key=True
    )
    chunk_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    # float32 P(malignant) per tile (NaN where skipped) and uint8 reason codes (0 = analysed).
    probabilities: Mapped[bytes] = mapped_column(LargeBinary)
    reasons: Mapped[bytes] = mapped_column(LargeBinary)


class AnalysisResult(Base):
    """The per-tile results of a finished analysis, as arrays over the whole grid."""

    __tablename__ = "analysis_results"

    analysis_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), primary_key=True
    )
    # float16 P(malignant), rows x cols, row-major; NaN where no tile was analysed.
    probabilities: Mapped[bytes] = mapped_column(LargeBinary)
    # uint8 codes, rows x cols: 0 analysed, 255 background (no tissue), else a skip reason.
    reasons: Mapped[bytes] = mapped_column(LargeBinary)


class Region(Base):
    """A suspicious region: tiles at or above the threshold, connected."""

    __tablename__ = "analysis_regions"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    analysis_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), index=True
    )
    rank: Mapped[int] = mapped_column(Integer)  # 1 = highest peak
    area_mm2: Mapped[float] = mapped_column(Float)
    peak_probability: Mapped[float] = mapped_column(Float)
    mean_probability: Mapped[float] = mapped_column(Float)
    tile_count: Mapped[int] = mapped_column(Integer)
    # Level-0 pixels: the bounding box and the polygon as GeoJSON geometry.
    bounds: Mapped[dict[str, int]] = mapped_column(JSONB)
    geometry: Mapped[dict[str, Any]] = mapped_column(JSONB)


class RegionTile(Base):
    """One of a region's top tiles, with its Grad-CAM overlay (computed in batches)."""

    __tablename__ = "analysis_region_tiles"

    region_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("analysis_regions.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    x: Mapped[int] = mapped_column(Integer)
    y: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    probability: Mapped[float] = mapped_column(Float)
    image_png: Mapped[bytes] = mapped_column(LargeBinary)
    gradcam_png: Mapped[bytes | None] = mapped_column(LargeBinary)


class RegionReview(Base):
    """A clinician's verdict on a region; the newest per reviewer counts."""

    __tablename__ = "region_reviews"
    __table_args__ = (
        CheckConstraint("verdict IN ('agree', 'correct', 'dismiss')", name="verdict_known"),
        CheckConstraint(
            "(verdict = 'correct') = (corrected_label IS NOT NULL)",
            name="corrected_label_with_correct",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    region_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("analysis_regions.id", ondelete="CASCADE"), index=True
    )
    reviewer: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    verdict: Mapped[str] = mapped_column(String(16))
    corrected_label: Mapped[str | None] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SlideReview(Base):
    """A clinician's verdict on the whole slide, given an analysis."""

    __tablename__ = "slide_reviews"
    __table_args__ = (
        CheckConstraint(
            "verdict IN ('benign', 'malignant', 'indeterminate')", name="verdict_known"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    analysis_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), index=True
    )
    reviewer: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    verdict: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
