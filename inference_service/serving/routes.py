import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request

from common.uploads import IMAGE_UPLOAD_OPENAPI, read_images, upload_openapi
from inference_service.deps import PatchCaller, ServingDep, SettingsDep, Writer
from inference_service.serving.arrays import NPY_MEDIA_TYPE, read_patch_array
from inference_service.serving.schemas import BatchPredictionOut, PatchBatchOut, PredictionOut

router = APIRouter(tags=["predictions"])
logger = logging.getLogger("inference_service")

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


# Multipart files (several in one field), or one .npy array as the raw body.
BATCH_OPENAPI = upload_openapi({}, (NPY_MEDIA_TYPE,), file_field="files", several_files=True)


@router.post(
    "/predict/batch",
    response_model=BatchPredictionOut | PatchBatchOut,
    responses={**ERRORS, 422: {"description": "Corrupt image, or an array not as described"}},
    openapi_extra=BATCH_OPENAPI,
    summary="Assess several images (multipart 'files') or many patches (one .npy array)",
    description="Multipart files get one full answer each, as POST /predict gives. Patches "
    "sent as one application/x-npy array (no image to decode per patch: what slide analysis "
    "and other callers with many patches send) get a compact answer each: the assessment, "
    "the label and P(malignant), and with heatmap=true the Grad-CAM map itself as uint8 "
    "values at the model's last convolution, not an overlay. quality=false skips the image "
    "quality checks, for a caller that ran them already. A slide-analysis worker sends its "
    "patches (.npy only) without a bearer token, with its service token in X-Service-Token "
    "instead, naming the user it acts for.",
)
async def predict_batch(
    request: Request,
    caller: PatchCaller,
    service: ServingDep,
    settings: SettingsDep,
    heatmap: Annotated[bool, Query(description="add each image's Grad-CAM")] = False,
    quality: Annotated[
        bool, Query(description="run the image quality checks on .npy patches")
    ] = True,
) -> BatchPredictionOut | PatchBatchOut:
    if caller.npy_body is not None:  # read by the dependency, within the array's limit
        patches = read_patch_array(
            caller.npy_body, settings.max_batch_patches, settings.max_batch_patch_side
        )
        logger.debug("%d patches from %s", len(patches), caller)
        return await service.predict_patches(patches, heatmap, quality)
    uploads = await read_images(
        request, "files", settings.max_batch_images, settings.max_upload_bytes
    )
    results = await service.predict(uploads, heatmap)
    return BatchPredictionOut(model_version=results[0].model_version, items=results)
