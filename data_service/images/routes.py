import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from common.db import SessionDep
from common.uploads import IMAGE_UPLOAD_OPENAPI, read_images
from data_service.deps import ImageStoreDep, Reader, SettingsDep, Writer
from data_service.images import service
from data_service.images.schemas import ImageOut

router = APIRouter(prefix="/images", tags=["images"])


@router.post(
    "",
    response_model=ImageOut,
    openapi_extra=IMAGE_UPLOAD_OPENAPI,
    responses={
        200: {"description": "Same Idempotency-Key: the record stored the first time"},
        201: {"description": "Recorded (the bytes are stored once, shared by every record)"},
        422: {"description": "Not a usable image, or an Idempotency-Key reused for another"},
    },
    summary="Record an upload of an image (its bytes stored once per content)",
)
async def upload_image(
    request: Request,
    who: Writer,
    session: SessionDep,
    settings: SettingsDep,
    store: ImageStoreDep,
    response: Response,
    patient_id: Annotated[uuid.UUID | None, Query()] = None,
    idempotency_key: Annotated[str | None, Header(max_length=160)] = None,
) -> ImageOut:
    [data] = await read_images(request, "file", 1, settings.max_upload_bytes)
    image, created = await service.store(
        session, store, data, patient_id, who.subject, settings.max_pixels, idempotency_key
    )
    await session.commit()
    response.status_code = 201 if created else 200
    return ImageOut.model_validate(image)


@router.get("/{image_id}", response_model=ImageOut)
async def get_image(image_id: uuid.UUID, _: Reader, session: SessionDep) -> ImageOut:
    return ImageOut.model_validate(await service.get(session, image_id))


@router.get(
    "/{image_id}/content",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
    summary="The image's bytes",
)
async def get_image_content(
    image_id: uuid.UUID, _: Reader, session: SessionDep, store: ImageStoreDep
) -> Response:
    image = await service.get(session, image_id)
    data = await asyncio.to_thread(store.read, image.sha256)
    return Response(
        data,
        media_type=image.content_type,
        headers={"Cache-Control": "private, max-age=86400", "ETag": f'"{image.sha256}"'},
    )
