"""Reading image uploads within limits, and the 4xx answer for each way they go wrong.

Reading and the quick type check need nothing beyond Starlette (the gateway uses them);
`decode_upload`, `read_upload_header` and `inspect_upload` need Pillow (via `ml.contract`,
the serving contract and the only part of `ml` shared code may use), which the services
that decode images (inference, data) install.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from common.errors import ServiceError

if TYPE_CHECKING:
    from PIL import Image

    from ml.contract import ImageHeader

T = TypeVar("T")

# The first bytes of the formats we read: enough to refuse a PDF or a text file without
# decoding anything.
IMAGE_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
    b"BM",  # BMP
    b"GIF87a",
    b"GIF89a",
)


def upload_openapi(
    form_fields: dict[str, dict],
    raw_types: tuple[str, ...],
    *,
    required: tuple[str, ...] = (),
    file_last: bool = False,
    file_field: str = "file",
    several_files: bool = False,
) -> dict:
    """The request body of an upload route, for its OpenAPI description (the route reads
    the body itself, within limits, so FastAPI cannot infer it): multipart `file_field` plus
    `form_fields` (before it when `file_last`, as a streaming reader needs them), or the raw
    file with one of `raw_types`. With `several_files`, the field repeats."""
    binary = {"type": "string", "format": "binary"}
    file = {file_field: {"type": "array", "items": binary} if several_files else binary}
    properties = {**form_fields, **file} if file_last else {**file, **form_fields}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": properties,
                        "required": [*required, file_field],
                    }
                },
                **{raw_type: {"schema": binary} for raw_type in raw_types},
            },
        }
    }


def image_upload_openapi(form_fields: dict[str, dict] | None = None) -> dict:
    """An image upload: multipart field `file` plus `form_fields`, or the raw image."""
    return upload_openapi(form_fields or {}, ("image/png", "image/jpeg"))


IMAGE_UPLOAD_OPENAPI = image_upload_openapi()


class UploadTooLarge(ServiceError):
    def __init__(self, limit: int, what: str = "The image") -> None:
        super().__init__(413, f"{what} is larger than {limit // (1024 * 1024)} MB.")


def _empty() -> ServiceError:
    return ServiceError(400, "The upload is empty.", code="empty_upload")


def looks_like_image(data: bytes) -> bool:
    """Whether the bytes start like an image format we read (WebP: RIFF....WEBP)."""
    return data.startswith(IMAGE_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def not_an_image() -> ServiceError:
    return ServiceError(
        415, "The file is not an image in a format we read (PNG, JPEG, TIFF, BMP, ...)."
    )


async def read_images(request: Request, field: str, max_files: int, limit: int) -> list[bytes]:
    """The uploaded files: multipart field `field`, or the raw body when it is sent with an
    image (or octet-stream) content type. Nothing beyond `limit` bytes per file is read."""
    files, _ = await read_upload(request, field, max_files, limit)
    return files


def media_type(request: Request) -> str:
    """The request's content type without its parameters, in lower case."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_form(
    request: Request, max_files: int, max_fields: int, limit: int, max_part_size: int | None = None
) -> FormData:
    """The multipart form (close it when done: its files are spooled), or the 4xx answer
    for a body that cannot be read or a text part beyond `max_part_size` (default `limit`)."""
    try:
        return await request.form(
            max_files=max_files, max_fields=max_fields, max_part_size=max_part_size or limit
        )
    except (MultiPartException, HTTPException) as exc:
        detail = str(getattr(exc, "detail", None) or getattr(exc, "message", exc))
        if "maximum size" in detail:
            raise UploadTooLarge(limit) from exc
        raise ServiceError(400, f"The multipart body cannot be read: {detail}") from exc


async def read_capped(upload: UploadFile, limit: int) -> bytes:
    """The uploaded file's bytes, or `UploadTooLarge` beyond `limit` (reading no further)."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLarge(limit)
    return data


async def read_body(request: Request, limit: int, what: str = "The image") -> bytes:
    """The raw request body, or `UploadTooLarge` as soon as it passes `limit` bytes (a
    declared Content-Length beyond it is refused before any byte is read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge(limit, what)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise UploadTooLarge(limit, what)
    return bytes(body)


async def read_upload(
    request: Request, field: str, max_files: int, limit: int
) -> tuple[list[bytes], dict[str, str]]:
    """`read_images`, with the multipart form's text fields (none for a raw body)."""
    fields: dict[str, str] = {}
    content_type = media_type(request)
    if content_type == "multipart/form-data":
        form = await read_form(request, max_files, 16, limit)
        try:  # spooled upload files are removed when the form closes
            uploads = [item for item in form.getlist(field) if isinstance(item, UploadFile)]
            if not uploads:
                raise ServiceError(
                    422,
                    f"Send the image in the multipart field {field!r}.",
                    code="validation_error",
                )
            if len(uploads) > max_files:
                raise ServiceError(
                    422, f"At most {max_files} images per request.", code="validation_error"
                )
            files = [await read_capped(upload, limit) for upload in uploads]
            fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        finally:
            await form.close()
    elif content_type.startswith("image/") or content_type == "application/octet-stream":
        files = [await read_body(request, limit)]
    else:
        raise ServiceError(
            415,
            "Send the image as multipart/form-data (field 'file') or as the raw body with an "
            "image content type.",
        )
    if any(len(data) == 0 for data in files):
        raise _empty()
    return files, fields


def _png_end(data: bytes) -> int | None:
    """Where the PNG's IEND chunk ends (None when the chunks do not reach one)."""
    offset = len(IMAGE_SIGNATURES[0])
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        offset += 12 + length  # length, type, data, CRC
        if kind == b"IEND":
            return offset
    return None


def has_trailing_data(data: bytes) -> bool:
    """Whether bytes follow the end of a PNG or JPEG: the mark of a polyglot (an image with
    an HTML page or a ZIP archive appended), which decoders ignore and we would store and
    serve back as it came."""
    if data.startswith(IMAGE_SIGNATURES[0]):
        end = _png_end(data)
        return end is not None and end < len(data)
    if data.startswith(IMAGE_SIGNATURES[1]):
        return not data.rstrip(b"\0").endswith(b"\xff\xd9")  # EOI, then at most padding
    return False


def _read_image(data: bytes, read: Callable[[], T]) -> T:
    """What `read` makes of the image bytes, or the 4xx envelope for what is wrong with them:
    data after their end, then whatever `ml.contract` finds."""
    from ml.contract import ImageError, ImageTooLarge, NotAnImage

    if has_trailing_data(data):
        raise ServiceError(
            422,
            "The image cannot be used: there is data after its end (or its end is missing).",
            code="invalid_image",
        )
    try:
        return read()
    except NotAnImage as exc:
        raise not_an_image() from exc
    except ImageTooLarge as exc:
        raise ServiceError(413, f"The image is too large: {exc}.") from exc
    except ImageError as exc:
        raise ServiceError(422, f"The image cannot be used: {exc}.", code="invalid_image") from exc


def decode_upload(data: bytes, max_pixels: int, max_side: int | None = None) -> "Image.Image":
    """The RGB image (reduced to at most `max_side` pixels on its longest side, decoded
    reduced where the format allows), or the 4xx envelope saying what is wrong with the
    bytes."""
    from ml.contract import decode_image

    return _read_image(
        data,
        lambda: decode_image(data, max_pixels=max_pixels, convert_grey=True, max_side=max_side),
    )


def read_upload_header(data: bytes, max_pixels: int) -> "ImageHeader":
    """Format, size and mode from the header (`ml.contract.read_header`: nothing decoded),
    or the 4xx envelope saying what is wrong with the bytes."""
    from ml.contract import read_header

    return _read_image(data, lambda: read_header(data, max_pixels=max_pixels, convert_grey=True))


def inspect_upload(data: bytes, max_pixels: int) -> "ImageHeader":
    """Format, size and mode of a usable image, checked without keeping its pixels
    (`ml.contract.check_image`), or the 4xx envelope saying what is wrong with the bytes."""
    from ml.contract import check_image

    return _read_image(data, lambda: check_image(data, max_pixels=max_pixels, convert_grey=True))
