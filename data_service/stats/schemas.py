from datetime import date

from pydantic import BaseModel


class DayCount(BaseModel):
    day: date
    count: int
    by_label: dict[str, int]  # not-assessable images have no label
    by_assessment: dict[str, int]


class ReviewCounts(BaseModel):
    current: int  # each reviewer's latest review of a prediction in the period
    agree: int
    reviewed_predictions: int
    agreement_rate: float | None  # agree / current; null before any review


class Stats(BaseModel):
    """What the predictions of a period add up to (latencies are the model's time per image,
    days are UTC days, oldest first). The fields are in the order this route has always
    answered them: the gateway relays the body as it is and documents it for its callers."""

    predictions: int
    mean_latency_ms: float | None
    by_label: dict[str, int]
    p95_latency_ms: float | None
    by_day: list[DayCount]
    by_model_version: dict[str, int]
    reviews: ReviewCounts
    # assessable, indeterminate, not_assessable, and not_recorded (stored before assessments
    # were recorded), each present; every reason code with the predictions that name it.
    by_assessment: dict[str, int]
    by_reason: dict[str, int]
