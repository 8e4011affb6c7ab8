"""`/api/v1/predictions`: assess an image (the prediction flow), list, open, review."""

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import TypeAdapter, ValidationError

from common.errors import ServiceError
from common.uploads import image_upload_openapi, looks_like_image, not_an_image, read_upload
from gateway.deps import (
    DownstreamsDep,
    PredictionFlowDep,
    PredictionQuota,
    ProxyDep,
    Reader,
    SettingsDep,
    Writer,
)
from gateway.plumbing.errors import error_responses
from gateway.plumbing.proxy import caller_identity, relay
from gateway.predictions.flow import Upload, stored_image
from gateway.predictions.schemas import (
    Label,
    Order,
    Prediction,
    PredictionPage,
    Review,
    ReviewCreate,
)

router = APIRouter(prefix="/api/v1/predictions", tags=["predictions"])

READ_ERRORS = error_responses(401, 422, 429, 503, 504)
IDEMPOTENCY_KEY = r"^[\x21-\x7e]{1,128}$"

UPLOAD_OPENAPI = image_upload_openapi({"patient_id": {"type": "string", "format": "uuid"}})


def _patient_id(form_value: str | None, query_value: uuid.UUID | None) -> uuid.UUID | None:
    if form_value is None or form_value == "":
        return query_value
    try:
        return TypeAdapter(uuid.UUID).validate_python(form_value)
    except ValidationError as exc:
        raise ServiceError(422, "patient_id must be a UUID.", code="validation_error") from exc


@router.post(
    "",
    response_model=Prediction,
    status_code=201,
    summary="Assess an image: store it, predict, store and return the prediction",
    description=(
        "The image as multipart field `file` (with an optional `patient_id` field) or as the "
        "raw body with an image content type (`patient_id` then in the query). With the "
        "same `Idempotency-Key`, a repeated request returns the first prediction (200, "
        "`Idempotent-Replayed: true`) instead of storing another; after a 503 or 504, "
        "repeat with the same key. A Grad-CAM overlay is stored unless `heatmap=false`."
    ),
    openapi_extra=UPLOAD_OPENAPI,
    responses={
        200: {"model": Prediction, "description": "Stored before under this Idempotency-Key"},
        **error_responses(
            400,
            401,
            403,
            404,
            413,
            415,
            422,
            429,
            503,
            504,
            s404="The patient does not exist",
            s422="Corrupt image, bad patient_id, or an Idempotency-Key reused for another image",
        ),
    },
)
async def create_prediction(
    request: Request,
    settings: SettingsDep,
    flow: PredictionFlowDep,
    principal: PredictionQuota,
    patient_id: Annotated[uuid.UUID | None, Query(description="for a raw-body upload")] = None,
    heatmap: Annotated[bool, Query(description="store a Grad-CAM overlay")] = True,
    idempotency_key: Annotated[
        str | None,
        Header(pattern=IDEMPOTENCY_KEY, description="Any unique string up to 128 characters"),
    ] = None,
) -> Response:
    [data], fields = await read_upload(request, "file", 1, settings.max_upload_bytes)
    if not looks_like_image(data):
        raise not_an_image()
    upload = Upload(
        data, _patient_id(fields.get("patient_id"), patient_id), heatmap, idempotency_key
    )
    result = await flow.run(upload, principal.subject, caller_identity(request))
    prediction_id = result.prediction["id"]
    headers = {"Location": f"/api/v1/predictions/{prediction_id}"}
    if not result.created:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        content=Prediction.model_validate(result.prediction).model_dump_json(),
        status_code=201 if result.created else 200,
        media_type="application/json",
        headers=headers,
    )


@router.get(
    "",
    response_model=PredictionPage,
    summary="Newest first, filtered; or in the review queue's order",
    description=(
        "`order=review_priority` lists indeterminate predictions and those a reviewer "
        "disagreed with first, then the rest, each newest first: the review queue's order. "
        "`reviewed_by_me=false` keeps those the caller has not reviewed: a second reviewer's "
        "queue, which still holds what another reviewer disputed."
    ),
    responses=READ_ERRORS,
)
async def list_predictions(
    proxy: ProxyDep,
    _: Reader,
    patient_id: uuid.UUID | None = None,
    label: Label | None = None,
    model_version: Annotated[str | None, Query(max_length=64)] = None,
    reviewed: bool | None = None,
    reviewed_by_me: bool | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    order: Order = "newest",
) -> Response:
    return await proxy.forward("data", "/predictions", idempotent=True)


@router.get(
    "/{prediction_id}",
    response_model=Prediction,
    summary="One prediction",
    responses={**READ_ERRORS, **error_responses(404)},
)
async def get_prediction(proxy: ProxyDep, prediction_id: uuid.UUID, _: Reader):
    return await proxy.forward("data", f"/predictions/{prediction_id}", idempotent=True)


IMAGE_RESPONSES = {
    200: {"content": {"image/png": {}, "image/jpeg": {}}, "description": "The image"},
    **READ_ERRORS,
    **error_responses(404),
}


@router.get(
    "/{prediction_id}/heatmap",
    response_class=Response,
    responses=IMAGE_RESPONSES,
    summary="The Grad-CAM overlay (PNG) at the image's size (reduced beyond 2,048 pixels)",
)
async def get_heatmap(
    request: Request, downstreams: DownstreamsDep, prediction_id: uuid.UUID, _: Reader
):
    headers = caller_identity(request)
    return relay(await stored_image(downstreams, prediction_id, "heatmap_ref", headers))


@router.get(
    "/{prediction_id}/image",
    response_class=Response,
    responses=IMAGE_RESPONSES,
    summary="The analysed image, as uploaded",
)
async def get_image(
    request: Request, downstreams: DownstreamsDep, prediction_id: uuid.UUID, _: Reader
):
    headers = caller_identity(request)
    return relay(await stored_image(downstreams, prediction_id, "image_id", headers))


@router.post(
    "/{prediction_id}/review",
    response_model=Review,
    status_code=201,
    summary="Agree, or disagree with the corrected label; the latest review counts",
    responses={**error_responses(401, 403, 404, 422, 429, 503, 504)},
)
async def review_prediction(proxy: ProxyDep, prediction_id: uuid.UUID, _: ReviewCreate, __: Writer):
    return await proxy.forward("data", f"/predictions/{prediction_id}/reviews", idempotent=False)


@router.get(
    "/{prediction_id}/reviews",
    response_model=list[Review],
    summary="Every review of the prediction, oldest first",
    responses={**READ_ERRORS, **error_responses(404)},
)
async def review_history(proxy: ProxyDep, prediction_id: uuid.UUID, _: Reader):
    return await proxy.forward("data", f"/predictions/{prediction_id}/reviews", idempotent=True)
