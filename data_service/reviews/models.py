import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from data_service.database import Base


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
        # The review queue reads the predictions reviewers disagreed with first.
        Index(
            "ix_reviews_current_disagreements",
            "prediction_id",
            postgresql_where=text("is_current AND verdict = 'disagree'"),
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
