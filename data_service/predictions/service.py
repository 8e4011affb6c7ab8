"""Predictions: stored once per idempotency key, listed newest first with filters and
keyset pagination (stable while new predictions arrive)."""

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, or_, select, union
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from common.errors import ServiceError
from data_service.audit.service import record
from data_service.images import service as images
from data_service.images.models import Image
from data_service.predictions.models import Prediction
from data_service.predictions.schemas import Order, PredictionCreate
from data_service.reviews.models import Review
from data_service.stats import rollups
from ml.assessment import Assessment


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
    session: AsyncSession,
    data: PredictionCreate,
    caller: str,
    idempotency_key: str | None,
    key_unused: bool = False,
) -> tuple[Prediction, bool]:
    """The stored prediction and whether it is new. The same caller repeating a key gets
    the first prediction back, even when the repeats arrive at the same moment. With
    `key_unused`, the caller knows that nothing was stored under the key before (the lookup
    is skipped; a repeat arriving meanwhile is still caught by the unique index)."""
    requester = uuid.UUID(caller)
    if idempotency_key is not None and not key_unused:
        earlier = await by_key(session, requester, idempotency_key)
        if earlier is not None:
            return earlier, False
    image = await images.get(session, data.image_id)
    if data.heatmap_ref is not None:
        await _check_heatmap(session, data.heatmap_ref, image)
    prediction = Prediction(
        **data.model_dump(exclude={"assessment", "reasons", "checks"}),
        assessment=data.assessment.value,
        reasons=[reason.value for reason in data.reasons],
        checks=[check.model_dump(mode="json") for check in data.checks],
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
    await rollups.count_prediction(session, prediction.id)
    await record(
        session,
        caller,
        "prediction.stored",
        "prediction",
        prediction.id,
        {
            "image_id": str(data.image_id),
            "label": data.label,
            "assessment": data.assessment.value,
            "model_version": data.model_version,
        },
    )
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
    # Whether `reviewer` has a current review of it: a second reviewer's queue is what they
    # have not reviewed, which keeps the predictions someone else disputed in it.
    reviewer: uuid.UUID | None = None
    reviewed_by_reviewer: bool | None = None


def check_period(created_from: datetime | None, created_to: datetime | None) -> None:
    """Refuse a period that ends before it starts (listings and statistics alike)."""
    if created_from and created_to and created_from > created_to:
        raise ServiceError(
            422, "created_from must not be after created_to.", code="validation_error"
        )


def encode_cursor(prediction: Prediction, tier: int | None = None) -> str:
    """Where the next page starts: the last row's sort key (with its tier in the review
    order, so that a cursor of one order is refused by the other)."""
    parts = [] if tier is None else [str(tier)]
    raw = "|".join([*parts, prediction.created_at.isoformat(), str(prediction.id)])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str, tiered: bool = False) -> tuple[int | None, datetime, uuid.UUID]:
    try:
        parts = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        if len(parts) != (3 if tiered else 2):
            raise ValueError("a cursor of another order")
        tier = int(parts.pop(0)) if tiered else None
        if tier not in (None, *TIERS):
            raise ValueError("no such tier")
        return tier, datetime.fromisoformat(parts[0]), uuid.UUID(parts[1])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceError(
            422, "The cursor is not one this service gave out.", code="validation_error"
        ) from exc


def is_reviewed():
    # Its own alias of reviews, so that it stays correlated to the prediction alone inside
    # any query that joins reviews itself.
    review = aliased(Review)
    return exists().where(review.prediction_id == Prediction.id)


# The review queue's order (active learning): first what the model could not decide and what
# a reviewer disagreed with, then the rest; newest first within each. Each group is read on
# its own, newest first along an index (the partial indexes of migration 0006 for the first),
# so a page costs the same at any table size.
FIRST, REST = 0, 1
TIERS = (FIRST, REST)


def reviewed_by(reviewer: uuid.UUID):
    # Along uq_reviews_current (prediction_id, reviewer) WHERE is_current.
    review = aliased(Review)
    return exists().where(
        review.prediction_id == Prediction.id, review.reviewer == reviewer, review.is_current
    )


def undecided():
    return Prediction.assessment == Assessment.INDETERMINATE.value


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


def _conditions(filters: PredictionFilter) -> list:
    conditions: list = []
    if filters.patient_id:
        conditions.append(Prediction.patient_id == filters.patient_id)
    if filters.label:
        conditions.append(Prediction.label == filters.label)
    if filters.model_version:
        conditions.append(Prediction.model_version == filters.model_version)
    if filters.reviewed is not None:
        conditions.append(is_reviewed() if filters.reviewed else ~is_reviewed())
    if filters.reviewer is not None and filters.reviewed_by_reviewer is not None:
        mine = reviewed_by(filters.reviewer)
        conditions.append(mine if filters.reviewed_by_reviewer else ~mine)
    if filters.created_from:
        conditions.append(Prediction.created_at >= filters.created_from)
    if filters.created_to:
        conditions.append(Prediction.created_at <= filters.created_to)
    return conditions


def _after(created: datetime, identifier: uuid.UUID):
    """Older than the row (`created`, `identifier`) in the newest-first order."""
    return or_(
        Prediction.created_at < created,
        and_(Prediction.created_at == created, Prediction.id < identifier),
    )


NEWEST_FIRST = (Prediction.created_at.desc(), Prediction.id.desc())


async def _newest(
    session: AsyncSession, conditions: list, limit: int
) -> list[tuple[Prediction, bool]]:
    """A page newest first: the page's ids along the index first, then whether each of them
    was reviewed. Asked of the whole query, PostgreSQL would hash every review to answer it
    (a scan growing with the table) instead of looking up the page's rows."""
    page = select(Prediction.id).where(*conditions).order_by(*NEWEST_FIRST).limit(limit).subquery()
    query = select(Prediction, is_reviewed().label("reviewed")).join(
        page, page.c.id == Prediction.id
    )
    rows = await session.execute(query.order_by(*NEWEST_FIRST))
    return [(row[0], bool(row[1])) for row in rows]


async def _first_group(
    session: AsyncSession, conditions: list, limit: int, disputes: bool = True
) -> list[tuple[Prediction, bool]]:
    """Undecided and disputed predictions, newest first: each kind along its own index, then
    the newest of both. `disputes=False` when the filters leave none (unreviewed only)."""
    undecided_ids = (
        select(Prediction.id).where(undecided(), *conditions).order_by(*NEWEST_FIRST).limit(limit)
    )
    if not disputes:
        return await _newest(session, [Prediction.id.in_(undecided_ids)], limit)
    ids = union(
        undecided_ids,
        select(Prediction.id)
        .where(Prediction.disputed, *conditions)
        .order_by(*NEWEST_FIRST)
        .limit(limit),
    )
    return await _newest(session, [Prediction.id.in_(ids)], limit)


async def list_page(
    session: AsyncSession,
    filters: PredictionFilter,
    limit: int,
    cursor: str | None,
    order: Order = "newest",
) -> tuple[list[tuple[Prediction, bool]], str | None]:
    check_period(filters.created_from, filters.created_to)
    conditions = _conditions(filters)
    tiered = order == "review_priority"
    tier, after = None, None
    if cursor:
        tier, created, identifier = decode_cursor(cursor, tiered)
        after = _after(created, identifier)
    if not tiered:
        rows = await _newest(
            session, [*conditions, *([after] if after is not None else [])], limit + 1
        )
        next_cursor = encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None
        return rows[:limit], next_cursor
    tiers: list[int] = []
    rows = []
    if tier in (None, FIRST):
        keyset = [after] if after is not None else []
        # A disputed prediction has a review: none is left when only unreviewed ones are.
        disputes = filters.reviewed is not False
        rows = await _first_group(session, [*conditions, *keyset], limit + 1, disputes)
        tiers = [FIRST] * len(rows)
    if len(rows) <= limit:
        keyset = [after] if after is not None and tier == REST else []
        rest = await _newest(
            session,
            [
                *conditions,
                Prediction.assessment.is_distinct_from(Assessment.INDETERMINATE.value),
                ~Prediction.disputed,
                *keyset,
            ],
            limit + 1 - len(rows),
        )
        rows += rest
        tiers += [REST] * len(rest)
    next_cursor = encode_cursor(rows[limit - 1][0], tiers[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor
