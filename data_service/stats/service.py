"""Statistics, computed by PostgreSQL (aggregates over indexed columns), never by loading
rows into Python."""

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Date, and_, cast, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from data_service.predictions.models import Prediction
from data_service.predictions.schemas import NOT_RECORDED
from data_service.predictions.service import check_period
from data_service.reviews.models import Review
from data_service.stats.schemas import DayCount, ReviewCounts, Stats
from ml.assessment import Assessment, Reason

ASSESSMENTS = (*(outcome.value for outcome in Assessment), NOT_RECORDED)
REASONS = tuple(reason.value for reason in Reason)


@dataclass
class DayTally:
    by_label: Counter[str] = field(default_factory=Counter)
    by_assessment: Counter[str] = field(default_factory=Counter)


async def summary(
    session: AsyncSession, created_from: datetime | None, created_to: datetime | None
) -> Stats:
    check_period(created_from, created_to)
    window = []
    if created_from:
        window.append(Prediction.created_at >= created_from)
    if created_to:
        window.append(Prediction.created_at <= created_to)
    where = and_(true(), *window)

    totals = (
        await session.execute(
            select(
                func.count(),
                func.avg(Prediction.latency_ms),
                func.percentile_cont(0.95).within_group(Prediction.latency_ms),
            ).where(where)
        )
    ).one()
    # One pass over the period gives the counts by day, label and assessment.
    day = cast(func.timezone("UTC", Prediction.created_at), Date)
    groups = await session.execute(
        select(day, Prediction.label, Prediction.assessment, func.count())
        .where(where)
        .group_by(day, Prediction.label, Prediction.assessment)
    )
    by_label: Counter[str] = Counter()
    by_assessment: Counter[str] = Counter(dict.fromkeys(ASSESSMENTS, 0))
    days: dict[date, DayTally] = {}
    for d, label, assessment, count in groups:
        outcome = assessment or NOT_RECORDED
        tally = days.setdefault(d, DayTally())
        tally.by_assessment[outcome] += count
        by_assessment[outcome] += count
        if label is not None:  # not-assessable images have no label
            tally.by_label[label] += count
            by_label[label] += count
    reason = func.unnest(Prediction.reasons).table_valued("reason").render_derived()
    by_reason = await session.execute(
        select(reason.c.reason, func.count())
        .select_from(Prediction)
        .join(reason, true())
        .where(where, Prediction.reasons.is_not(None))
        .group_by(reason.c.reason)
    )
    by_version = await session.execute(
        select(Prediction.model_version, func.count())
        .where(where)
        .group_by(Prediction.model_version)
        .order_by(Prediction.model_version)
    )
    reviews = (
        await session.execute(
            select(func.count(), func.count().filter(Review.verdict == "agree"))
            .select_from(Review)
            .join(Prediction, Prediction.id == Review.prediction_id)
            .where(Review.is_current, where)
        )
    ).one()
    reviewed_predictions = await session.scalar(
        select(func.count(func.distinct(Review.prediction_id)))
        .join(Prediction, Prediction.id == Review.prediction_id)
        .where(Review.is_current, where)
    )
    return Stats(
        predictions=totals[0],
        mean_latency_ms=round(float(totals[1]), 3) if totals[1] is not None else None,
        by_label=dict(sorted(by_label.items())),
        p95_latency_ms=round(float(totals[2]), 3) if totals[2] is not None else None,
        by_day=[
            DayCount(
                day=d,
                count=sum(tally.by_assessment.values()),
                by_label=dict(sorted(tally.by_label.items())),
                by_assessment=dict(tally.by_assessment),
            )
            for d, tally in sorted(days.items())
        ],
        by_model_version={version: count for version, count in by_version},
        by_assessment=dict(by_assessment),
        by_reason={**dict.fromkeys(REASONS, 0), **{reason: count for reason, count in by_reason}},
        reviews=ReviewCounts(
            current=reviews[0],
            agree=reviews[1],
            reviewed_predictions=reviewed_predictions or 0,
            agreement_rate=round(reviews[1] / reviews[0], 4) if reviews[0] else None,
        ),
    )
