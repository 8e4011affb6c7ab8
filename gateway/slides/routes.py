"""`/api/v1/slides`: upload a whole-slide image (streamed), list, open, view, delete.

Each route maps one to one onto the slide service, which checks the caller again and
answers in the same envelope. The deep-zoom descriptor and tiles take a view grant
(`?grant=`, from `POST /{id}/view-links`) instead of a bearer token, so that a viewer can
load them by URL; the slide service checks the grant. Tiles count against a rate limit of
their own (`tiles_router`), not the general one: one view asks for hundreds.
"""

import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from common.auth import current_principal
from common.uploads import upload_openapi
from gateway.deps import Admin, DownstreamsDep, ProxyDep, Reader, SlideUploadsDep, Writer
from gateway.plumbing.errors import error_responses
from gateway.plumbing.proxy import caller_identity, raise_for_answer, relay
from gateway.slides.schemas import Slide, SlidePage, ViewLink

PREFIX = "/api/v1/slides"
router = APIRouter(prefix=PREFIX, tags=["slides"])
tiles_router = APIRouter(prefix=PREFIX, tags=["slides"])

READ_ERRORS = error_responses(401, 422, 429, 503, 504)
ONE_SLIDE_ERRORS = {**READ_ERRORS, **error_responses(404, s404="No such slide")}
UPLOAD_OPENAPI = upload_openapi(
    {
        "patient_id": {"type": "string", "format": "uuid"},
        "microns_per_pixel": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1000},
    },
    ("application/octet-stream", "application/zip"),
    required=("patient_id",),
    file_last=True,  # the fields are read before the file streams on
)
UPLOAD_STATUSES = (400, 401, 403, 404, 413, 415, 422, 429, 503, 504)
CACHED_IMAGE = {
    "description": "The image; `ETag` and `Cache-Control` let a viewer keep it",
    "headers": {
        "ETag": {"schema": {"type": "string"}},
        "Cache-Control": {"schema": {"type": "string"}},
    },
}
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Unchanged since the `If-None-Match` ETag"}
}
Grant = Annotated[
    str | None,
    Query(max_length=4096, description="A view grant for this slide, instead of a bearer token"),
]


# Optional here: a request with a grant needs none.
_bearer = HTTPBearer(auto_error=False, description="An access token from POST /token.")


async def reader_or_grant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    grant: Grant = None,
) -> None:
    """With a grant, nothing here: the slide service checks it (signature, expiry, slide).
    Without one, a valid bearer token of any role (401 otherwise)."""
    if grant is None:
        await current_principal(request, credentials)


@router.post(
    "",
    response_model=Slide,
    status_code=201,
    summary="Upload a whole-slide image, streamed, for a patient",
    description=(
        "multipart/form-data with the fields `patient_id` and optional `microns_per_pixel` "
        "BEFORE the field `file` (the file streams on as it arrives); or the raw file as the "
        "body (`application/octet-stream`; `application/zip` for a MIRAX folder or a DICOM "
        "series) with `patient_id`, `filename` and optional `microns_per_pixel` in the query. "
        "Formats: those OpenSlide reads (Aperio SVS, generic tiled TIFF, NDPI, SCN, MIRAX, "
        "Philips TIFF, BIF, DICOM WSI). A plain image is refused (415 `not_a_slide`): assess "
        "it with `POST /api/v1/predictions`. Where the file has no microns per pixel and none "
        "is sent, the slide is recorded with `resolution_source: unknown`."
    ),
    openapi_extra=UPLOAD_OPENAPI,
    responses=error_responses(
        *UPLOAD_STATUSES,
        s400="The upload stopped short of its end, or was empty",
        s404="The patient does not exist",
        s415="Not a slide, or a format not read",
        s422="A corrupt slide, an unsafe archive, a file name with a path, or a bad field",
    ),
)
async def upload_slide(
    request: Request,
    uploads: SlideUploadsDep,
    _: Writer,
    patient_id: Annotated[uuid.UUID | None, Query(description="for a raw-body upload")] = None,
    filename: Annotated[
        str | None, Query(min_length=1, max_length=255, description="for a raw-body upload")
    ] = None,
    microns_per_pixel: Annotated[
        float | None, Query(gt=0, lt=1000, description="when the file does not say")
    ] = None,
) -> Response:
    answer = await uploads.upload(
        request,
        str(patient_id) if patient_id else None,
        filename,
        None if microns_per_pixel is None else repr(microns_per_pixel),
    )
    return relay(answer)


@router.get(
    "", response_model=SlidePage, summary="Slides, newest first, by patient", responses=READ_ERRORS
)
async def list_slides(
    proxy: ProxyDep,
    _: Reader,
    patient_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    return await proxy.forward("slides", "/slides", idempotent=True)


@router.get(
    "/{slide_id}", response_model=Slide, summary="One slide's metadata", responses=ONE_SLIDE_ERRORS
)
async def get_slide(proxy: ProxyDep, slide_id: uuid.UUID, _: Reader) -> Response:
    return await proxy.forward("slides", f"/slides/{slide_id}", idempotent=True)


@router.get(
    "/{slide_id}/thumbnail",
    response_class=Response,
    summary="A JPEG of the whole slide, at most max_size pixels on its longer side",
    responses={200: {"content": {"image/jpeg": {}}, **CACHED_IMAGE}, **ONE_SLIDE_ERRORS},
)
async def get_thumbnail(
    proxy: ProxyDep,
    slide_id: uuid.UUID,
    _: Reader,
    max_size: Annotated[int, Query(ge=16, le=1024)] = 256,
) -> Response:
    return await proxy.forward("slides", f"/slides/{slide_id}/thumbnail", idempotent=True)


@router.get(
    "/{slide_id}/associated/{name}",
    response_class=Response,
    summary="An associated image (label, macro...): admins only, and audited",
    description=(
        "The label and macro images of a real slide show the patient's name or hospital "
        "number, which nothing else here does: only admins read them, and each read is audited."
    ),
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "The image"},
        **READ_ERRORS,
        **error_responses(403, 404, s404="No such slide or associated image"),
    },
)
async def get_associated_image(
    proxy: ProxyDep,
    slide_id: uuid.UUID,
    name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")],
    _: Admin,
) -> Response:
    return await proxy.forward(
        "slides", f"/slides/{slide_id}/associated/{quote(name, safe='')}", idempotent=True
    )


@router.post(
    "/{slide_id}/view-links",
    response_model=ViewLink,
    summary="A grant to view one slide by URL, read-only, for minutes",
    description=(
        "`dzi_url` and `tile_url_template` carry the grant: a viewer (OpenSeadragon) loads the "
        "descriptor and the tiles with them, without the bearer token."
    ),
    responses=ONE_SLIDE_ERRORS,
)
async def create_view_link(
    request: Request, downstreams: DownstreamsDep, slide_id: uuid.UUID, _: Reader
) -> ViewLink:
    answer = await downstreams.call(
        "slides",
        "POST",
        f"/slides/{slide_id}/view-links",
        idempotent=True,  # a second grant is as good as the first
        headers=caller_identity(request),
    )
    raise_for_answer(answer)
    link = answer.json()
    grant = quote(link["grant"], safe="")
    return ViewLink(
        grant=link["grant"],
        expires_at=link["expires_at"],
        dzi_url=f"{PREFIX}/{slide_id}/dzi?grant={grant}",
        tile_url_template=f"{PREFIX}/{slide_id}/tiles/{{level}}/{{col}}_{{row}}.jpeg?grant={grant}",
    )


@router.get(
    "/{slide_id}/dzi",
    response_class=Response,
    summary="The Deep Zoom descriptor (XML), with a bearer token or a view grant",
    responses={
        200: {"content": {"application/xml": {}}, **CACHED_IMAGE, "description": "The DZI"},
        **NOT_MODIFIED,
        **ONE_SLIDE_ERRORS,
        **error_responses(403, s403="The grant is for another slide"),
    },
    dependencies=[Depends(reader_or_grant)],
)
async def get_dzi(proxy: ProxyDep, slide_id: uuid.UUID, grant: Grant = None) -> Response:
    return await proxy.forward("slides", f"/slides/{slide_id}/dzi", idempotent=True)


@tiles_router.get(
    "/{slide_id}/tiles/{level}/{col}_{row}.jpeg",
    response_class=Response,
    summary="One deep-zoom tile (JPEG), with a bearer token or a view grant",
    responses={
        200: {"content": {"image/jpeg": {}}, **CACHED_IMAGE},
        **NOT_MODIFIED,
        **ONE_SLIDE_ERRORS,
        **error_responses(
            403, 404, s403="The grant is for another slide", s404="No such slide or tile"
        ),
    },
    dependencies=[Depends(reader_or_grant)],
)
async def get_tile(
    proxy: ProxyDep,
    slide_id: uuid.UUID,
    level: Annotated[int, Path(ge=0, le=64)],
    col: Annotated[int, Path(ge=0, le=1_000_000)],
    row: Annotated[int, Path(ge=0, le=1_000_000)],
    grant: Grant = None,
) -> Response:
    return await proxy.forward(
        "slides", f"/slides/{slide_id}/tiles/{level}/{col}_{row}.jpeg", idempotent=True
    )


@router.delete(
    "/{slide_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a slide (admins; audited); its file goes with its last record",
    responses={**READ_ERRORS, **error_responses(403, 404, s404="No such slide")},
)
async def delete_slide(proxy: ProxyDep, slide_id: uuid.UUID, _: Admin) -> Response:
    return await proxy.forward("slides", f"/slides/{slide_id}", idempotent=True)
