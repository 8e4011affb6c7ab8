"""Keeping the daily rollups (`stats.models`) in step with the rows they count.

`count_prediction` and `count_review` run in the transaction that stores the prediction or
the review, so a rollup never counts a row that was rolled back, nor misses one that was
committed. Each is one statement of upserts (`INSERT ... ON CONFLICT DO UPDATE`), whose row
locks make concurrent writers to the same day add up instead of overwriting each other.

Latencies are counted in buckets eight to a doubling, from 0.01 ms: the p95 read back from
them (`latency_percentile`) is within 4.4 % (half a bucket, geometrically) of the exact one.
"""

import math
import uuid
from collections.abc import Mapping
from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

LATENCY_FLOOR_MS = 0.01
BUCKETS_PER_DOUBLING = 8
LATENCY_BUCKETS = 200  # the last one holds everything from 0.01 ms * 2**(199/8), about 5 min


# The bucket of a latency, in SQL: the function migration 0007 defines, with the constants
# above.
LATENCY_BUCKET_SQL = "latency_bucket(latency_ms)"


def bucket_middle_ms(bucket: int) -> float:
    """The geometric middle of a bucket: at most half a bucket from any latency in it."""
    return LATENCY_FLOOR_MS * 2 ** ((bucket + 0.5) / BUCKETS_PER_DOUBLING)


def latency_percentile(counts: Mapping[int, int], fraction: float) -> float | None:
    """The `fraction` percentile of the latencies counted by bucket, interpolated between
    the two nearest ranks as PostgreSQL's `percentile_cont` does, each rank read as its
    bucket's middle."""
    total = sum(counts.values())
    if total == 0:
        return None
    position = fraction * (total - 1)
    below, above = math.floor(position), math.ceil(position)

    def at(rank: int) -> float:
        seen = 0
        for bucket in sorted(counts):
            seen += counts[bucket]
            if rank < seen:
                return bucket_middle_ms(bucket)
        raise AssertionError("rank beyond the counts")

    low, high = at(below), at(above)
    return low + (high - low) * (position - below)


_COUNT_PREDICTION = text(
    """
WITH stored AS (
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
        model_version, label, assessment, latency_ms, reasons
    FROM predictions WHERE id = :prediction_id
), counts AS (
    INSERT INTO prediction_day_counts
        (day, model_version, label, assessment, predictions, latency_ms_sum)
    SELECT day, model_version, label, assessment, 1, latency_ms FROM stored
    ON CONFLICT (day, model_version, label, assessment) DO UPDATE
    SET predictions = prediction_day_counts.predictions + 1,
        latency_ms_sum = prediction_day_counts.latency_ms_sum + EXCLUDED.latency_ms_sum
), latencies AS (
    INSERT INTO prediction_day_latencies (day, bucket, predictions)
    SELECT day, latency_bucket(latency_ms), 1 FROM stored
    ON CONFLICT (day, bucket) DO UPDATE
    SET predictions = prediction_day_latencies.predictions + 1
)
INSERT INTO prediction_day_reasons (day, reason, predictions)
SELECT day, reason, count(*) FROM stored, unnest(stored.reasons) AS named(reason)
GROUP BY day, reason ORDER BY reason
ON CONFLICT (day, reason) DO UPDATE
SET predictions = prediction_day_reasons.predictions + EXCLUDED.predictions
"""
)


async def count_prediction(session: AsyncSession, prediction_id: uuid.UUID) -> None:
    """Add a prediction just stored (flushed, same transaction) to its day's rollups."""
    await session.execute(_COUNT_PREDICTION, {"prediction_id": prediction_id})


_COUNT_REVIEW = text(
    """
INSERT INTO review_day_counts (day, current, agree, reviewed_predictions)
VALUES (:day, :current, :agree, :reviewed_predictions)
ON CONFLICT (day) DO UPDATE
SET current = review_day_counts.current + EXCLUDED.current,
    agree = review_day_counts.agree + EXCLUDED.agree,
    reviewed_predictions = review_day_counts.reviewed_predictions + EXCLUDED.reviewed_predictions
"""
)


async def count_review(
    session: AsyncSession,
    day: date,
    verdict: str,
    superseded_verdict: str | None,
    first_current_review: bool,
) -> None:
    """Count a new current review of a prediction of `day`. `superseded_verdict`: the
    verdict of the same reviewer's review it replaces, if any; `first_current_review`: no
    reviewer had a current review of the prediction before."""
    agrees = int(verdict == "agree") - int(superseded_verdict == "agree")
    await session.execute(
        _COUNT_REVIEW,
        {
            "day": day,
            "current": 0 if superseded_verdict is not None else 1,
            "agree": agrees,
            "reviewed_predictions": int(first_current_review),
        },
    )
