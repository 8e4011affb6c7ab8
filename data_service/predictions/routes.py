import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from common.db import SessionDep
from common.uploads import upload_openapi
from data_service.deps import (
    GatewayCall,
    ImageStoreDep,
    Reader,
    SettingsDep,
    Writer,
    page_limit,
)
from data_service.predictions import service, with_images
from data_service.predictions.models import Prediction
from data_service.predictions.schemas import (
    Order,
    PredictionCreate,
    PredictionOut,
    PredictionPage,
)

router = APIRouter(prefix="/predictions", tags=["predictions"])


def out(prediction: Prediction, reviewed: bool) -> PredictionOut:
    return PredictionOut.model_validate(prediction).model_copy(update={"reviewed": reviewed})


@router.post(
    "",
    response_model=PredictionOut,
    responses={
        200: {"description": "Same Idempotency-Key: the first prediction"},
        201: {"description": "Stored"},
        401: {"description": "No valid bearer token, or no valid gateway service token"},
        403: {"description": "Not a clinician or admin, or a service token for another request"},
        404: {"description": "image_id or heatmap_ref names no stored image"},
    },
    summary="Store a prediction (the gateway only)",
)
async def store_prediction(
    body: PredictionCreate,
    who: GatewayCall,
    session: SessionDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> PredictionOut:
    prediction, created = await service.create(session, body, who.subject, idempotency_key)
    await session.commit()
    response.status_code = 201 if created else 200
    return out(prediction, False)


BINARY = {"type": "string", "format": "binary"}
WITH_IMAGES_OPENAPI = upload_openapi(
    {
        with_images.OVERLAY_PART: {**BINARY, "description": "the Grad-CAM overlay (PNG)"},
        with_images.PREDICTION_PART: {
            "type": "string",
            "description": "the model's answer: JSON, as `PredictionCreate` without image_id "
            "and heatmap_ref",
        },
    },
    (),
    required=(with_images.PREDICTION_PART,),
    file_field=with_images.IMAGE_PART,
)


@router.post(
    "/with-images",
    response_model=PredictionOut,
    openapi_extra=WITH_IMAGES_OPENAPI,
    responses={
        200: {"description": "Same Idempotency-Key, same upload: the first prediction"},
        201: {"description": "The image, the overlay and the prediction stored"},
        401: {"description": "No valid bearer token, or no valid gateway service token"},
        403: {"description": "Not a clinician or admin, or a service token for another request"},
        404: {"description": "patient_id names no patient"},
        413: {"description": "The image or the overlay is too large"},
        415: {"description": "Not multipart, or a part that is not an image"},
        422: {"description": "A part missing or invalid, or the key reused for another upload"},
    },
    summary="Store an upload, its overlay and its prediction at once (the gateway only)",
)
async def store_prediction_with_images(
    request: Request,
    who: GatewayCall,
    session: SessionDep,
    settings: SettingsDep,
    files: ImageStoreDep,
    response: Response,
    patient_id: Annotated[uuid.UUID | None, Query()] = None,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> PredictionOut:
    upload = await with_images.read_parts(request, settings.max_upload_bytes)
    prediction, created = await with_images.store(
        session, files, upload, patient_id, who.subject, settings.max_pixels, idempotency_key
    )
    if created:  # a repeat's own records (its overlay) are left uncommitted
        await session.commit()
    response.status_code = 201 if created else 200
    return out(prediction, False)


@router.get(
    "",
    response_model=PredictionPage,
    summary="Newest first, filtered; or in the review queue's order",
    description=(
        "`order=review_priority`: indeterminate predictions and those a reviewer disagreed "
        "with first, then the rest, each newest first (the review queue's order). "
        "`reviewed_by_me=false`: those the caller has not reviewed, so a second reviewer "
        "still sees what another disputed."
    ),
)
async def list_predictions(
    who: Reader,
    session: SessionDep,
    settings: SettingsDep,
    patient_id: uuid.UUID | None = None,
    label: Annotated[str | None, Query(max_length=32)] = None,
    model_version: Annotated[str | None, Query(max_length=64)] = None,
    reviewed: bool | None = None,
    reviewed_by_me: bool | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: Annotated[int, Query(ge=1)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    order: Order = "newest",
) -> PredictionPage:
    limit = page_limit(limit, settings.max_page_size)
    filters = service.PredictionFilter(
        patient_id,
        label,
        model_version,
        reviewed,
        created_from,
        created_to,
        reviewer=uuid.UUID(who.subject) if reviewed_by_me is not None else None,
        reviewed_by_reviewer=reviewed_by_me,
    )
    rows, next_cursor = await service.list_page(session, filters, limit, cursor, order)
    return PredictionPage(items=[out(p, r) for p, r in rows], next_cursor=next_cursor)


@router.get(
    "/by-key",
    response_model=PredictionOut,
    responses={404: {"description": "The caller stored no prediction under this key"}},
    summary="The caller's prediction stored under an Idempotency-Key",
)
async def get_by_idempotency_key(
    who: Writer, session: SessionDep, key: Annotated[str, Query(min_length=1, max_length=128)]
) -> PredictionOut:
    prediction = await service.by_key(session, uuid.UUID(who.subject), key)
    if prediction is None:
        raise service.PredictionNotFound()
    return out(*await service.get_with_reviewed(session, prediction.id))


@router.get("/{prediction_id}", response_model=PredictionOut)
async def get_prediction(prediction_id: uuid.UUID, _: Reader, session: SessionDep) -> PredictionOut:
    return out(*await service.get_with_reviewed(session, prediction_id))
