from typing import Annotated

from fastapi import APIRouter, Query, Request

from common.uploads import IMAGE_UPLOAD_OPENAPI, read_images
from inference_service.deps import ServingDep, SettingsDep, Writer
from inference_service.serving.schemas import BatchPredictionOut, PredictionOut

router = APIRouter(tags=["predictions"])

ERRORS = {
    400: {"description": "Empty upload"},
    413: {"description": "Too many bytes or pixels"},
    415: {"description": "Not an image"},
    422: {"description": "Corrupt, truncated or multi-frame image"},
    503: {"description": "No model version is active"},
}


@router.post(
    "/predict",
    response_model=PredictionOut,
    responses=ERRORS,
    openapi_extra=IMAGE_UPLOAD_OPENAPI,
    summary="Assess one image",
)
async def predict(
    request: Request,
    _: Writer,
    service: ServingDep,
    settings: SettingsDep,
    heatmap: Annotated[bool, Query(description="add a Grad-CAM overlay PNG")] = False,
) -> PredictionOut:
    [data] = await read_images(request, "file", 1, settings.max_upload_bytes)
    [result] = await service.predict([data], heatmap)
    return result


@router.post(
    "/predict/batch",
    response_model=BatchPredictionOut,
    responses=ERRORS,
    summary="Assess several images (multipart field 'files')",
)
async def predict_batch(
    request: Request,
    _: Writer,
    service: ServingDep,
    settings: SettingsDep,
    heatmap: bool = False,
) -> BatchPredictionOut:
    uploads = await read_images(
        request, "files", settings.max_batch_images, settings.max_upload_bytes
    )
    results = await service.predict(uploads, heatmap)
    return BatchPredictionOut(model_version=results[0].model_version, items=results)
