"""Every table of the data service, in one module: they reference each other."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from data_service.database import Base
from data_service.patients.models import Patient

__all__ = ["AuditEvent", "Image", "Patient", "Prediction", "Review"]


class Image(Base):
    """An uploaded image, stored once per content (its SHA-256 names the file)."""

    __tablename__ = "images"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    content_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    byte_size: Mapped[int] = mapped_column(Integer)
    patient_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("patients.id"), index=True
    )
    uploaded_by: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        # The same caller with the same Idempotency-Key gets the first prediction back.
        Index(
            "uq_predictions_idempotency",
            "requested_by",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        # Newest first, with a tie-break, is the listing order (keyset pagination).
        Index("ix_predictions_created_at_id", text("created_at DESC"), text("id DESC")),
        Index("ix_predictions_label_created_at", "label", text("created_at DESC")),
        Index("ix_predictions_model_version_created_at", "model_version", text("created_at DESC")),
        Index("ix_predictions_patient_id_created_at", "patient_id", text("created_at DESC")),
        CheckConstraint("probability BETWEEN 0 AND 1", name="probability_range"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    image_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("images.id"), index=True
    )
    # Copied from the image when the prediction is stored, for filtering without a join.
    patient_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("patients.id")
    )
    model_version: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(32))
    probability: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[dict[str, float]] = mapped_column(JSONB)
    threshold: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    heatmap_ref: Mapped[str | None] = mapped_column(String(256))
    # Where the Grad-CAM map concentrates (region, spread); None without a heatmap.
    heatmap_focus: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    requested_by: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Review(Base):
    """A clinician's verdict on a prediction. Each reviewer has one current review per
    prediction; a new one supersedes it and the old ones stay as history."""

    __tablename__ = "reviews"
    __table_args__ = (
        Index(
            "uq_reviews_current",
            "prediction_id",
            "reviewer",
            unique=True,
            postgresql_where=text("is_current"),
        ),
        CheckConstraint("verdict IN ('agree', 'disagree')", name="verdict_known"),
        CheckConstraint(
            "(verdict = 'agree' AND corrected_label IS NULL) OR "
            "(verdict = 'disagree' AND corrected_label IS NOT NULL)",
            name="correction_matches_verdict",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    prediction_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("predictions.id"), index=True
    )
    reviewer: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    verdict: Mapped[str] = mapped_column(String(16))
    corrected_label: Mapped[str | None] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AuditEvent(Base):
    """Who did what to which resource; rows are never changed or deleted (a trigger refuses)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    actor: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), index=True)
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
