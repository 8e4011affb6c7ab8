"""Statistics of a period, from the daily rollups (`stats.models`) for the UTC days it holds
whole, and from the rows themselves for the parts of days at its ends: the cost follows the
number of days, not of predictions.

The reads run in one REPEATABLE READ transaction, so the parts add up to one moment's
counts while predictions keep arriving."""

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    and_,
    cast,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession

from data_service.predictions.models import Prediction
from data_service.predictions.schemas import NOT_RECORDED
from data_service.predictions.service import check_period
from data_service.reviews.models import Review
from data_service.stats.models import (
    PredictionDayCount,
    PredictionDayLatency,
    PredictionDayReason,
    ReviewDayCount,
)
from data_service.stats.rollups import LATENCY_BUCKET_SQL, latency_percentile
from data_service.stats.schemas import DayCount, ReviewCounts, Stats
from ml.assessment import Assessment, Reason

ASSESSMENTS = (*(outcome.value for outcome in Assessment), NOT_RECORDED)
REASONS = tuple(reason.value for reason in Reason)


@dataclass
class DayTally:
    by_label: Counter[str] = field(default_factory=Counter)
    by_assessment: Counter[str] = field(default_factory=Counter)


@dataclass
class Tally:
    """What a part of the period adds up to, from rollups or from rows alike."""

    # (day, model version, label, assessment) -> predictions
    groups: Counter[tuple[date, str, str | None, str | None]] = field(default_factory=Counter)
    latency_ms_sum: float = 0.0
    latency_buckets: Counter[int] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    reviews_current: int = 0
    reviews_agree: int = 0
    reviewed_predictions: int = 0

    def add(self, other: "Tally") -> None:
        self.groups.update(other.groups)
        self.latency_ms_sum += other.latency_ms_sum
        self.latency_buckets.update(other.latency_buckets)
        self.by_reason.update(other.by_reason)
        self.reviews_current += other.reviews_current
        self.reviews_agree += other.reviews_agree
        self.reviewed_predictions += other.reviewed_predictions


@dataclass(frozen=True)
class Split:
    """The whole UTC days of a period (`first` to `last`, none when `first > last`), and the
    condition on `created_at` of the rest of it."""

    first: date | None
    last: date | None
    rest: ColumnElement[bool]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def split_period(created_from: datetime | None, created_to: datetime | None) -> Split:
    """Day D is whole when the period holds [D 00:00, D+1 00:00) UTC. `created_to` is
    inclusive, so a period ending at midnight also holds that instant of the next day."""
    first = last = None
    if created_from is not None:
        start = created_from.astimezone(UTC)
        first = start.date() if start == _midnight(start.date()) else start.date() + timedelta(1)
    if created_to is not None:
        last = created_to.astimezone(UTC).date() - timedelta(1)
    if first is not None and last is not None and first > last:
        window = [Prediction.created_at >= created_from, Prediction.created_at <= created_to]
        return Split(None, None, and_(*window))
    edges: list[ColumnElement[bool]] = []
    if first is not None:
        edges.append(
            and_(Prediction.created_at >= created_from, Prediction.created_at < _midnight(first))
        )
    if last is not None:
        edges.append(
            and_(
                Prediction.created_at >= _midnight(last + timedelta(1)),
                Prediction.created_at <= created_to,
            )
        )
    return Split(first, last, or_(false(), *edges))


def _days(column: Any, split: Split) -> list[ColumnElement[bool]]:
    conditions = []
    if split.first is not None:
        conditions.append(column >= split.first)
    if split.last is not None:
        conditions.append(column <= split.last)
    return conditions


async def _from_rollups(session: AsyncSession, split: Split) -> Tally:
    tally = Tally()
    counts = await session.execute(
        select(
            PredictionDayCount.day,
            PredictionDayCount.model_version,
            PredictionDayCount.label,
            PredictionDayCount.assessment,
            PredictionDayCount.predictions,
            PredictionDayCount.latency_ms_sum,
        ).where(*_days(PredictionDayCount.day, split))
    )
    for day, version, label, assessment, predictions, latency_sum in counts:
        tally.groups[(day, version, label, assessment)] += predictions
        tally.latency_ms_sum += latency_sum
    buckets = await session.execute(
        select(PredictionDayLatency.bucket, func.sum(PredictionDayLatency.predictions))
        .where(*_days(PredictionDayLatency.day, split))
        .group_by(PredictionDayLatency.bucket)
    )
    tally.latency_buckets.update({bucket: int(count) for bucket, count in buckets})
    reasons = await session.execute(
        select(PredictionDayReason.reason, func.sum(PredictionDayReason.predictions))
        .where(*_days(PredictionDayReason.day, split))
        .group_by(PredictionDayReason.reason)
    )
    tally.by_reason.update({reason: int(count) for reason, count in reasons})
    reviews = (
        await session.execute(
            select(
                func.coalesce(func.sum(ReviewDayCount.current), 0),
                func.coalesce(func.sum(ReviewDayCount.agree), 0),
                func.coalesce(func.sum(ReviewDayCount.reviewed_predictions), 0),
            ).where(*_days(ReviewDayCount.day, split))
        )
    ).one()
    tally.reviews_current, tally.reviews_agree, tally.reviewed_predictions = map(int, reviews)
    return tally


async def _from_rows(session: AsyncSession, where: ColumnElement[bool]) -> Tally:
    tally = Tally()
    day = cast(func.timezone("UTC", Prediction.created_at), Date)
    groups = await session.execute(
        select(
            day,
            Prediction.model_version,
            Prediction.label,
            Prediction.assessment,
            func.count(),
            func.coalesce(func.sum(Prediction.latency_ms), 0.0),
        )
        .where(where)
        .group_by(day, Prediction.model_version, Prediction.label, Prediction.assessment)
    )
    for d, version, label, assessment, count, latency_sum in groups:
        tally.groups[(d, version, label, assessment)] += count
        tally.latency_ms_sum += latency_sum
    bucket = literal_column(LATENCY_BUCKET_SQL)
    buckets = await session.execute(select(bucket, func.count()).where(where).group_by(bucket))
    tally.latency_buckets.update({int(b): count for b, count in buckets})
    reason = func.unnest(Prediction.reasons).table_valued("reason").render_derived()
    reasons = await session.execute(
        select(reason.c.reason, func.count())
        .select_from(Prediction)
        .join(reason, true())
        .where(where, Prediction.reasons.is_not(None))
        .group_by(reason.c.reason)
    )
    tally.by_reason.update({reason: count for reason, count in reasons})
    reviews = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(Review.verdict == "agree"),
                func.count(func.distinct(Review.prediction_id)),
            )
            .join(Prediction, Prediction.id == Review.prediction_id)
            .where(Review.is_current, where)
        )
    ).one()
    tally.reviews_current, tally.reviews_agree, tally.reviewed_predictions = map(int, reviews)
    return tally


async def summary(
    session: AsyncSession, created_from: datetime | None, created_to: datetime | None
) -> Stats:
    check_period(created_from, created_to)
    # Before the first statement: every part is read from the same snapshot.
    await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    split = split_period(created_from, created_to)
    tally = Tally()
    if (
        split.first is not None
        or split.last is not None
        or (created_from is None and created_to is None)
    ):
        tally.add(await _from_rollups(session, split))
    if created_from is not None or created_to is not None:
        tally.add(await _from_rows(session, split.rest))
    return _stats(tally)


def _stats(tally: Tally) -> Stats:
    by_label: Counter[str] = Counter()
    by_assessment: Counter[str] = Counter(dict.fromkeys(ASSESSMENTS, 0))
    by_version: Counter[str] = Counter()
    days: dict[date, DayTally] = {}
    for (day, version, label, assessment), count in tally.groups.items():
        if not count:
            continue
        outcome = assessment or NOT_RECORDED
        day_tally = days.setdefault(day, DayTally())
        day_tally.by_assessment[outcome] += count
        by_assessment[outcome] += count
        by_version[version] += count
        if label is not None:  # not-assessable images have no label
            day_tally.by_label[label] += count
            by_label[label] += count
    predictions = sum(by_version.values())
    p95 = latency_percentile(tally.latency_buckets, 0.95)
    return Stats(
        predictions=predictions,
        mean_latency_ms=round(tally.latency_ms_sum / predictions, 3) if predictions else None,
        by_label=dict(sorted(by_label.items())),
        p95_latency_ms=round(p95, 3) if p95 is not None else None,
        by_day=[
            DayCount(
                day=day,
                count=sum(day_tally.by_assessment.values()),
                by_label=dict(sorted(day_tally.by_label.items())),
                by_assessment=dict(day_tally.by_assessment),
            )
            for day, day_tally in sorted(days.items())
        ],
        by_model_version=dict(sorted(by_version.items())),
        by_assessment=dict(by_assessment),
        by_reason={**dict.fromkeys(REASONS, 0), **tally.by_reason},
        reviews=ReviewCounts(
            current=tally.reviews_current,
            agree=tally.reviews_agree,
            reviewed_predictions=tally.reviewed_predictions,
            agreement_rate=(
                round(tally.reviews_agree / tally.reviews_current, 4)
                if tally.reviews_current
                else None
            ),
        ),
    )
