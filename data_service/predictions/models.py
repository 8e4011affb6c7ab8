import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    String,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from data_service.database import Base


class Prediction(Base):
    __tablename__ = "predictions"
    # The INSERT returns `created_at` and `disputed` (RETURNING): no reload after storing.
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}
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
        # The review queue reads undecided predictions first, newest first.
        Index(
            "ix_predictions_indeterminate_created_at_id",
            text("created_at DESC"),
            text("id DESC"),
            postgresql_where=text("assessment = 'indeterminate'"),
        ),
        # ... and those a reviewer disagreed with (`disputed`), newest first.
        Index(
            "ix_predictions_disputed_created_at_id",
            text("created_at DESC"),
            text("id DESC"),
            postgresql_where=text("disputed"),
        ),
        CheckConstraint("probability BETWEEN 0 AND 1", name="probability_range"),
        CheckConstraint(
            "assessment IN ('assessable', 'indeterminate', 'not_assessable')",
            name="assessment_known",
        ),
        # No verdict on what could not be assessed, and a verdict on everything else; rows
        # stored before assessments were recorded (assessment NULL) all have a label.
        CheckConstraint(
            "(label IS NULL) = coalesce(assessment = 'not_assessable', false)",
            name="label_unless_not_assessable",
        ),
        CheckConstraint("(probability IS NULL) = (label IS NULL)", name="probability_of_label"),
        # The reasons are recorded exactly when the assessment is.
        CheckConstraint("(reasons IS NULL) = (assessment IS NULL)", name="reasons_with_assessment"),
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
    # None when the image was not assessable: no verdict is given on it.
    label: Mapped[str | None] = mapped_column(String(32))
    probability: Mapped[float | None] = mapped_column(Float)
    # Always stored, for audit, even when no label is given.
    probabilities: Mapped[dict[str, float]] = mapped_column(JSONB)
    threshold: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    # The stored image of the Grad-CAM overlay.
    heatmap_ref: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("images.id")
    )
    # Where the Grad-CAM map concentrates (region, spread); None without a heatmap. Its
    # shape is `HeatmapFocus` (predictions/schemas.py), checked when the prediction arrives.
    heatmap_focus: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # `ml.assessment.Assessment` and its `Reason` codes, in order; None on predictions
    # stored before assessments were recorded ("not recorded").
    assessment: Mapped[str | None] = mapped_column(String(16))
    reasons: Mapped[list[str] | None] = mapped_column(ARRAY(String(32)))
    # The measures behind them (`ml.assessment.Check.as_dict()`), checked on arrival.
    checks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    # Some reviewer's current review disagrees: kept by `reviews.service.create` under the
    # prediction's row lock, so the review queue reads disputes along an index of their own.
    disputed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    requested_by: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
