"""The gateway's prediction flow in one request: the uploaded image, its Grad-CAM overlay and
the model's prediction of it stored together, in one transaction (the image files written
and fsynced before it commits, as every image is), with the checks and idempotency of the
separate routes: they are the same service functions.

The request is multipart: `image` (the upload's bytes), `overlay` (optional, the overlay's
bytes) and `prediction` (the model's answer as JSON, `ModelPrediction`). A repeat of the
Idempotency-Key for the same upload returns the first prediction, and for other bytes or
another patient is refused.
"""

import uuid
from dataclasses import dataclass

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile

from common.errors import ServiceError
from common.uploads import media_type, read_form
from data_service.images import service as images
from data_service.images.storage import ImageStore
from data_service.predictions import service as predictions
from data_service.predictions.models import Prediction
from data_service.predictions.schemas import ModelPrediction, PredictionCreate

IMAGE_PART, OVERLAY_PART, PREDICTION_PART = "image", "overlay", "prediction"
# A prediction is a few hundred bytes (a handful of checks at most): far more is not one.
PREDICTION_PART_LIMIT = 64 * 1024


@dataclass(frozen=True)
class PredictionWithImages:
    image: bytes
    overlay: bytes | None
    prediction: ModelPrediction


def _missing(name: str) -> ServiceError:
    return ServiceError(422, f"The multipart part {name!r} is missing.", code="validation_error")


async def _part(form: FormData, name: str, limit: int) -> bytes | None:
    """The bytes of the one part called `name` (a file or a text field), None without one."""
    items = form.getlist(name)
    if len(items) > 1:
        raise ServiceError(422, f"Send one part {name!r}, not several.", code="validation_error")
    if not items:
        return None
    item = items[0]
    data = await item.read(limit + 1) if isinstance(item, UploadFile) else item.encode()
    if len(data) > limit:
        raise ServiceError(413, f"The part {name!r} is larger than {limit:,} bytes.")
    if not data:
        raise ServiceError(400, f"The part {name!r} is empty.", code="empty_upload")
    return data


async def read_parts(request: Request, max_upload_bytes: int) -> PredictionWithImages:
    """The three parts, each within its limit (an image or overlay within
    `max_upload_bytes`), or the 4xx answer for what is wrong with the body."""
    if media_type(request) != "multipart/form-data":
        raise ServiceError(
            415, "Send multipart/form-data with the parts image, overlay and prediction."
        )
    # Each part a file or (the prediction) a text field.
    form = await read_form(request, 3, 1, max_upload_bytes, max_part_size=PREDICTION_PART_LIMIT)
    try:
        unknown = set(form.keys()) - {IMAGE_PART, OVERLAY_PART, PREDICTION_PART}
        if unknown:
            raise ServiceError(
                422, f"Unknown parts: {', '.join(sorted(unknown))}.", code="validation_error"
            )
        image = await _part(form, IMAGE_PART, max_upload_bytes)
        overlay = await _part(form, OVERLAY_PART, max_upload_bytes)
        prediction = await _part(form, PREDICTION_PART, PREDICTION_PART_LIMIT)
    finally:
        await form.close()
    if image is None:
        raise _missing(IMAGE_PART)
    if prediction is None:
        raise _missing(PREDICTION_PART)
    try:
        answer = ModelPrediction.model_validate_json(prediction)
    except ValidationError as exc:
        # Located in the part, in the envelope every validation error gets.
        raise RequestValidationError(
            [{**error, "loc": ("body", PREDICTION_PART, *error["loc"])} for error in exc.errors()]
        ) from exc
    return PredictionWithImages(image, overlay, answer)


async def store(
    session: AsyncSession,
    files: ImageStore,
    upload: PredictionWithImages,
    patient_id: uuid.UUID | None,
    caller: str,
    max_pixels: int,
    idempotency_key: str | None,
) -> tuple[Prediction, bool]:
    """The stored prediction and whether it is new: commit only then (a repeat has stored
    nothing of its own that should stay). The image and the overlay are checked and stored
    as `POST /images` stores them; the prediction as `POST /predictions` does.

    Under a key, the image record is the one kept under `<key>:image`: stored there by the
    gateway alone when the model failed, or by the first of repeated requests (other bytes
    or another patient under the same key are refused there, 422). The overlay needs no key
    of its own: it is new with its prediction, and goes with it when that is not."""
    image, image_is_new = await images.store(
        session,
        files,
        upload.image,
        patient_id,
        caller,
        max_pixels,
        f"{idempotency_key}:image" if idempotency_key is not None else None,
    )
    overlay = None
    if upload.overlay is not None:
        overlay, _ = await images.store(
            session, files, upload.overlay, patient_id, caller, max_pixels
        )
    record = PredictionCreate(
        **upload.prediction.model_dump(),
        image_id=image.id,
        heatmap_ref=overlay.id if overlay is not None else None,
    )
    # A prediction under the key is only ever stored with its image under `<key>:image`:
    # when that image is new, so is the key.
    return await predictions.create(
        session, record, caller, idempotency_key, key_unused=image_is_new
    )
