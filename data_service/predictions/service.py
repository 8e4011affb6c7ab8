"""Predictions: stored once per idempotency key, listed newest first with filters and
keyset pagination (stable while new predictions arrive)."""

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import ServiceError
from data_service.audit.service import record
from data_service.images import service as images
from data_service.images.models import Image
from data_service.predictions.models import Prediction
from data_service.predictions.schemas import PredictionCreate
from data_service.reviews.models import Review


class PredictionNotFound(ServiceError):
    def __init__(self) -> None:
        super().__init__(404, "No such prediction.", code="prediction_not_found")


async def get(session: AsyncSession, prediction_id: uuid.UUID) -> Prediction:
    prediction = await session.get(Prediction, prediction_id)
    if prediction is None:
        raise PredictionNotFound()
    return prediction


async def by_key(session: AsyncSession, caller: uuid.UUID, key: str) -> Prediction | None:
    return await session.scalar(
        select(Prediction).where(
            Prediction.requested_by == caller, Prediction.idempotency_key == key
        )
    )


async def create(
    session: AsyncSession, data: PredictionCreate, caller: str, idempotency_key: str | None
) -> tuple[Prediction, bool]:
    """The stored prediction and whether it is new. The same caller repeating a key gets
    the first prediction back, even when the repeats arrive at the same moment."""
    requester = uuid.UUID(caller)
    if idempotency_key is not None:
        earlier = await by_key(session, requester, idempotency_key)
        if earlier is not None:
            return earlier, False
    image = await images.get(session, data.image_id)
    if data.heatmap_ref is not None:
        await _check_heatmap(session, data.heatmap_ref, image)
    prediction = Prediction(
        **data.model_dump(),
        patient_id=image.patient_id,
        requested_by=requester,
        idempotency_key=idempotency_key,
    )
    session.add(prediction)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        earlier = await by_key(session, requester, idempotency_key) if idempotency_key else None
        if earlier is None:
            raise
        return earlier, False
    await record(
        session,
        caller,
        "prediction.stored",
        "prediction",
        prediction.id,
        {"image_id": str(data.image_id), "label": data.label, "model_version": data.model_version},
    )
    await session.refresh(prediction)
    return prediction, True


class HeatmapNotFound(ServiceError):
    def __init__(self) -> None:
        super().__init__(404, "heatmap_ref names no stored image.", code="heatmap_not_found")


async def _check_heatmap(session: AsyncSession, heatmap_ref: uuid.UUID, image: Image) -> None:
    """The overlay is a stored image of the same patient as the analysed one."""
    heatmap = await session.get(Image, heatmap_ref)
    if heatmap is None:
        raise HeatmapNotFound()
    if heatmap.patient_id != image.patient_id:
        raise ServiceError(
            422,
            "The heatmap belongs to another patient than the image.",
            code="heatmap_patient_mismatch",
        )


@dataclass(frozen=True)
class PredictionFilter:
    patient_id: uuid.UUID | None = None
    label: str | None = None
    model_version: str | None = None
    reviewed: bool | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


def check_period(created_from: datetime | None, created_to: datetime | None) -> None:
    """Refuse a period that ends before it starts (listings and statistics alike)."""
    if created_from and created_to and created_from > created_to:
        raise ServiceError(
            422, "created_from must not be after created_to.", code="validation_error"
        )


def encode_cursor(prediction: Prediction) -> str:
    raw = f"{prediction.created_at.isoformat()}|{prediction.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, identifier = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(identifier)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceError(
            422, "The cursor is not one this service gave out.", code="validation_error"
        ) from exc


def is_reviewed():
    return exists().where(Review.prediction_id == Prediction.id)


async def get_with_reviewed(session: AsyncSession, prediction_id: uuid.UUID):
    """The prediction and whether anyone has reviewed it, in one query."""
    row = (
        await session.execute(
            select(Prediction, is_reviewed()).where(Prediction.id == prediction_id)
        )
    ).first()
    if row is None:
        raise PredictionNotFound()
    return row[0], bool(row[1])


async def list_page(
    session: AsyncSession, filters: PredictionFilter, limit: int, cursor: str | None
) -> tuple[list[tuple[Prediction, bool]], str | None]:
    check_period(filters.created_from, filters.created_to)
    reviewed = is_reviewed().label("reviewed")
    query = select(Prediction, reviewed)
    if filters.patient_id:
        query = query.where(Prediction.patient_id == filters.patient_id)
    if filters.label:
        query = query.where(Prediction.label == filters.label)
    if filters.model_version:
        query = query.where(Prediction.model_version == filters.model_version)
    if filters.reviewed is not None:
        query = query.where(is_reviewed() if filters.reviewed else ~is_reviewed())
    if filters.created_from:
        query = query.where(Prediction.created_at >= filters.created_from)
    if filters.created_to:
        query = query.where(Prediction.created_at <= filters.created_to)
    if cursor:
        created, identifier = decode_cursor(cursor)
        query = query.where(
            or_(
                Prediction.created_at < created,
                and_(Prediction.created_at == created, Prediction.id < identifier),
            )
        )
    rows = (
        await session.execute(
            query.order_by(Prediction.created_at.desc(), Prediction.id.desc()).limit(limit + 1)
        )
    ).all()
    page = [(row[0], bool(row[1])) for row in rows[:limit]]
    next_cursor = encode_cursor(page[-1][0]) if len(rows) > limit else None
    return page, next_cursor
