"""What the stored predictions add up to, as `/openapi.json` documents the data service's
statistics."""

from datetime import date

from pydantic import BaseModel, Field


class DayCount(BaseModel):
    day: date
    count: int
    by_label: dict[str, int] = Field(examples=[{"benign": 9, "malignant": 3}])


class ReviewStats(BaseModel):
    current: int = Field(description="Reviews in force (the latest per prediction)")
    agree: int = Field(description="Of those, agreements with the model")
    reviewed_predictions: int
    agreement_rate: float | None = Field(description="agree / current; null before any review")


class Stats(BaseModel):
    predictions: int = Field(description="Predictions in the period")
    mean_latency_ms: float | None = Field(description="Mean model time per image")
    p95_latency_ms: float | None = Field(description="95th percentile of the model time")
    by_label: dict[str, int] = Field(examples=[{"benign": 120, "malignant": 41}])
    by_day: list[DayCount] = Field(description="UTC days, oldest first")
    by_model_version: dict[str, int]
    reviews: ReviewStats
