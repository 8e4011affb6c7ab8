import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.requests import ClientDisconnect

from common.db import SessionDep
from common.errors import ServiceError
from slide_service.deps import (
    Admin,
    Reader,
    SettingsDep,
    SlideRefsDep,
    SlideStoreDep,
    TileServerDep,
    Writer,
    page_limit,
)
from slide_service.slides import formats, service
from slide_service.slides.models import Slide
from slide_service.slides.schemas import SlideOut, SlidePage
from slide_service.slides.storage import SlideStore
from slide_service.tiles.deepzoom import SlideRef, not_modified, thumbnail_etag

router = APIRouter(prefix="/slides", tags=["slides"])

ACCEPTED_TYPES = ("application/octet-stream", "application/zip", "application/x-zip-compressed")
JPEG = {200: {"content": {"image/jpeg": {}}}}
UPLOAD_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            kind: {"schema": {"type": "string", "format": "binary"}}
            for kind in ("application/octet-stream", "application/zip")
        },
    }
}


def slide_ref(store: SlideStore, slide: Slide) -> SlideRef:
    return SlideRef(slide.id, slide.sha256, store.path_of(slide.content_path))


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect as exc:
        raise service.incomplete() from exc


@router.post(
    "",
    status_code=201,
    response_model=SlideOut,
    openapi_extra=UPLOAD_OPENAPI,
    summary="Upload a slide: the raw file, or a zip for multi-file formats (MIRAX, DICOM)",
)
async def upload_slide(
    request: Request,
    who: Writer,
    session: SessionDep,
    settings: SettingsDep,
    store: SlideStoreDep,
    patient_id: uuid.UUID,
    filename: Annotated[str, Query(max_length=255)],
    microns_per_pixel: Annotated[float | None, Query(gt=0, lt=1000)] = None,
) -> SlideOut:
    formats.check_filename(filename)
    media_type = request.headers.get("content-type", "application/octet-stream")
    if media_type.split(";")[0].strip().lower() not in ACCEPTED_TYPES:
        raise ServiceError(
            415,
            "Send the slide as application/octet-stream, or a zip as application/zip.",
            code="unsupported_media_type",
        )
    length = request.headers.get("content-length")
    declared = int(length) if length and length.isdigit() else None
    upload = await service.receive(
        store, _body(request), filename, declared, settings.max_upload_bytes
    )
    slide = await service.store(
        session,
        store,
        upload,
        patient_id=patient_id,
        filename=filename,
        uploader=who.subject,
        microns_per_pixel=microns_per_pixel,
        max_archive_members=settings.max_archive_members,
        max_archive_bytes=settings.max_archive_bytes,
        max_read_pixels=settings.max_read_pixels,
    )
    return SlideOut.model_validate(slide)


@router.get("", response_model=SlidePage, summary="Slides, newest first, by patient")
async def list_slides(
    _: Reader,
    session: SessionDep,
    settings: SettingsDep,
    patient_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> SlidePage:
    limit = page_limit(limit, settings.max_page_size)
    items, total = await service.page(session, patient_id, limit, offset)
    return SlidePage(
        items=[SlideOut.model_validate(s) for s in items], total=total, limit=limit, offset=offset
    )


@router.get("/{slide_id}", response_model=SlideOut)
async def get_slide(slide_id: uuid.UUID, _: Reader, session: SessionDep) -> SlideOut:
    return SlideOut.model_validate(await service.get(session, slide_id))


@router.get("/{slide_id}/thumbnail", response_class=Response, responses=JPEG)
async def thumbnail(
    request: Request,
    slide_id: uuid.UUID,
    _: Reader,
    session: SessionDep,
    store: SlideStoreDep,
    tiles: TileServerDep,
    max_size: Annotated[int, Query(ge=16, le=1024)] = 256,
) -> Response:
    slide = await service.get(session, slide_id)
    ref = slide_ref(store, slide)
    etag = thumbnail_etag(ref, max_size)
    headers = {"ETag": etag, "Cache-Control": "private, max-age=3600"}
    if not_modified(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(await tiles.thumbnail(ref, max_size), media_type="image/jpeg", headers=headers)


@router.get(
    "/{slide_id}/associated/{name}",
    response_class=Response,
    responses=JPEG,
    summary="An associated image (label, macro...): admins only, every read audited",
)
async def associated_image(
    slide_id: uuid.UUID,
    name: Annotated[str, Path(max_length=64)],
    who: Admin,
    session: SessionDep,
    store: SlideStoreDep,
    tiles: TileServerDep,
) -> Response:
    slide = await service.read_associated(session, slide_id, name, who.subject)
    data = await tiles.associated(slide_ref(store, slide), name)
    # The label shows patient identifiers: never kept by a browser or a proxy.
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.delete("/{slide_id}", status_code=204, response_class=Response)
async def delete_slide(
    slide_id: uuid.UUID,
    who: Admin,
    session: SessionDep,
    store: SlideStoreDep,
    tiles: TileServerDep,
    refs: SlideRefsDep,
) -> Response:
    slide = await service.delete(session, store, slide_id, who.subject)
    refs.forget(slide.id)
    tiles.forget(slide_ref(store, slide))
    return Response(status_code=204)
