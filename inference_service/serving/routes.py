from typing import Annotated

from fastapi import APIRouter, Query, Request

from common.uploads import IMAGE_UPLOAD_OPENAPI, media_type, read_images, upload_openapi
from inference_service.deps import ServingDep, SettingsDep, Writer
from inference_service.serving.arrays import NPY_MEDIA_TYPE, read_patches
from inference_service.serving.schemas import BatchPredictionOut, PatchBatchOut, PredictionOut

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
    "quality checks, for a caller that ran them already.",
)
async def predict_batch(
    request: Request,
    _: Writer,
    service: ServingDep,
    settings: SettingsDep,
    heatmap: Annotated[bool, Query(description="add each image's Grad-CAM")] = False,
    quality: Annotated[
        bool, Query(description="run the image quality checks on .npy patches")
    ] = True,
) -> BatchPredictionOut | PatchBatchOut:
    if media_type(request) == NPY_MEDIA_TYPE:
        patches = await read_patches(
            request,
            settings.max_batch_array_bytes,
            settings.max_batch_patches,
            settings.max_batch_patch_side,
        )
        return await service.predict_patches(patches, heatmap, quality)
    uploads = await read_images(
        request, "files", settings.max_batch_images, settings.max_upload_bytes
    )
    results = await service.predict(uploads, heatmap)
    return BatchPredictionOut(model_version=results[0].model_version, items=results)
