"""Reviews: one current verdict per prediction and reviewer; earlier ones kept as history."""

import uuid
from datetime import UTC

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import ServiceError
from data_service.audit.service import record
from data_service.predictions import service as predictions
from data_service.predictions.models import Prediction
from data_service.reviews.models import Review
from data_service.reviews.schemas import ReviewCreate
from data_service.stats import rollups


async def create(
    session: AsyncSession, prediction_id: uuid.UUID, data: ReviewCreate, reviewer: str
) -> Review:
    # Locked, so that two reviews by one reviewer at once keep exactly one current.
    prediction = await session.scalar(
        select(Prediction).where(Prediction.id == prediction_id).with_for_update()
    )
    if prediction is None:
        raise predictions.PredictionNotFound()
    if data.corrected_label is not None:
        classes = sorted(prediction.probabilities)
        if data.corrected_label not in classes:
            raise ServiceError(
                422,
                f"corrected_label must be one of {', '.join(classes)}.",
                code="validation_error",
            )
        if data.corrected_label == prediction.label:
            raise ServiceError(
                422,
                "A disagreement must correct to another label than the model's.",
                code="validation_error",
            )
    who = uuid.UUID(reviewer)
    reviewed_before = await session.scalar(
        select(exists().where(Review.prediction_id == prediction_id, Review.is_current))
    )
    superseded_verdict = await session.scalar(
        update(Review)
        .where(Review.prediction_id == prediction_id, Review.reviewer == who, Review.is_current)
        .values(is_current=False)
        .returning(Review.verdict)
    )
    day = prediction.created_at.astimezone(UTC).date()
    await rollups.count_review(session, day, data.verdict, superseded_verdict, not reviewed_before)
    review = Review(prediction_id=prediction_id, reviewer=who, **data.model_dump())
    session.add(review)
    await session.flush()
    prediction.disputed = bool(
        await session.scalar(
            select(
                exists().where(
                    Review.prediction_id == prediction_id,
                    Review.is_current,
                    Review.verdict == "disagree",
                )
            )
        )
    )
    await record(
        session,
        reviewer,
        "review.created",
        "prediction",
        prediction_id,
        {"review_id": str(review.id), "verdict": data.verdict},
    )
    await session.refresh(review)
    return review


async def history(session: AsyncSession, prediction_id: uuid.UUID) -> list[Review]:
    await predictions.get(session, prediction_id)
    return list(
        await session.scalars(
            select(Review)
            .where(Review.prediction_id == prediction_id)
            .order_by(Review.created_at, Review.id)
        )
    )
