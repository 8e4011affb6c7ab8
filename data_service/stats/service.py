"""Statistics, computed by PostgreSQL (aggregates over indexed columns), never by loading
rows into Python."""

from datetime import date, datetime

from sqlalchemy import Date, and_, cast, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from data_service.predictions.models import Prediction
from data_service.predictions.service import check_period
from data_service.reviews.models import Review
from data_service.stats.schemas import DayCount, ReviewCounts, Stats


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
    by_label = await session.execute(
        select(Prediction.label, func.count()).where(where).group_by(Prediction.label)
    )
    day = cast(func.timezone("UTC", Prediction.created_at), Date)
    by_day_and_label = await session.execute(
        select(day, Prediction.label, func.count())
        .where(where)
        .group_by(day, Prediction.label)
        .order_by(day, Prediction.label)
    )
    days: dict[date, dict[str, int]] = {}
    for d, label, count in by_day_and_label:
        days.setdefault(d, {})[label] = count
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
        by_label={label: count for label, count in by_label},
        p95_latency_ms=round(float(totals[2]), 3) if totals[2] is not None else None,
        by_day=[
            DayCount(day=d, count=sum(labels.values()), by_label=labels)
            for d, labels in days.items()
        ],
        by_model_version={version: count for version, count in by_version},
        reviews=ReviewCounts(
            current=reviews[0],
            agree=reviews[1],
            reviewed_predictions=reviewed_predictions or 0,
            agreement_rate=round(reviews[1] / reviews[0], 4) if reviews[0] else None,
        ),
    )
