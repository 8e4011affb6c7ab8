"""Daily rollups of predictions and reviews: what `/stats` reads, so that its cost follows the
number of days, not of rows. Each is updated in the transaction that stores the prediction
or the review (`data_service.stats.rollups`); migration 0007 built them from the rows
stored before. Days are UTC days of the prediction's `created_at`."""

from datetime import date

from sqlalchemy import BigInteger, Date, Float, Index, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from data_service.database import Base


class PredictionDayCount(Base):
    """Predictions of one day, model version, label and assessment (label NULL: not
    assessable; assessment NULL: stored before assessments were recorded)."""

    __tablename__ = "prediction_day_counts"
    __table_args__ = (
        # NULL label and assessment are values of the key here (PostgreSQL 15 and newer).
        Index(
            "uq_prediction_day_counts_key",
            "day",
            "model_version",
            "label",
            "assessment",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date)
    model_version: Mapped[str] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(32))
    assessment: Mapped[str | None] = mapped_column(String(16))
    predictions: Mapped[int] = mapped_column(BigInteger)
    latency_ms_sum: Mapped[float] = mapped_column(Float)


class PredictionDayReason(Base):
    """Predictions of one day that name a reason (one prediction may name several)."""

    __tablename__ = "prediction_day_reasons"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    predictions: Mapped[int] = mapped_column(BigInteger)


class PredictionDayLatency(Base):
    """Predictions of one day by latency bucket (`rollups.LATENCY_BUCKET_SQL`): the p95 of
    any set of days, to within half a bucket."""

    __tablename__ = "prediction_day_latencies"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    predictions: Mapped[int] = mapped_column(BigInteger)


class ReviewDayCount(Base):
    """Current reviews of the predictions of one day: how many, how many agree, and how many
    predictions have at least one."""

    __tablename__ = "review_day_counts"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    current: Mapped[int] = mapped_column(BigInteger)
    agree: Mapped[int] = mapped_column(BigInteger)
    reviewed_predictions: Mapped[int] = mapped_column(BigInteger)
