"""What the stored predictions add up to, as `/openapi.json` documents the data service's
statistics."""

from datetime import date

from pydantic import BaseModel, Field


class DayCount(BaseModel):
    day: date
    count: int
    by_label: dict[str, int] = Field(examples=[{"benign": 9, "malignant": 3}])
    by_assessment: dict[str, int] = Field(
        examples=[{"assessable": 10, "indeterminate": 2, "not_assessable": 1, "not_recorded": 0}]
    )


class ReviewStats(BaseModel):
    current: int = Field(description="Reviews in force (the latest per prediction)")
    agree: int = Field(description="Of those, agreements with the model")
    reviewed_predictions: int
    agreement_rate: float | None = Field(description="agree / current; null before any review")


class Stats(BaseModel):
    predictions: int = Field(description="Predictions in the period")
    mean_latency_ms: float | None = Field(description="Mean model time per image")
    p95_latency_ms: float | None = Field(
        description="95th percentile of the model time, to within 4.4 % (read from latency "
        "buckets eight to a doubling)"
    )
    by_label: dict[str, int] = Field(
        examples=[{"benign": 120, "malignant": 41}],
        description="Predictions by label; not-assessable ones have none",
    )
    by_day: list[DayCount] = Field(description="UTC days, oldest first")
    by_model_version: dict[str, int]
    reviews: ReviewStats
    by_assessment: dict[str, int] = Field(
        description="Predictions by assessment: assessable, indeterminate, not_assessable, and "
        "not_recorded (stored before assessments were recorded)",
        examples=[{"assessable": 150, "indeterminate": 11, "not_assessable": 4, "not_recorded": 0}],
    )
    by_reason: dict[str, int] = Field(
        description="Every reason code, with the predictions that name it (a prediction may "
        "name several)",
        examples=[{"no_tissue": 3, "out_of_focus": 1, "near_threshold": 11}],
    )
