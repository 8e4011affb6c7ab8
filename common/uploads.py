"""Reading image uploads within limits, and the 4xx answer for each way they go wrong.

For the services that take images (inference, data); it needs Pillow (via `ml.preprocessing`).
"""

from fastapi import Request
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from common.errors import ServiceError
from ml.preprocessing import ImageError, ImageTooLarge, NotAnImage, decode_image

# The request body of an image upload route, for its OpenAPI description (the route reads
# the body itself, within limits, so FastAPI cannot infer it).
IMAGE_UPLOAD_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class UploadTooLarge(ServiceError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The image is larger than {limit // (1024 * 1024)} MB.")


def _empty() -> ServiceError:
    return ServiceError(400, "The upload is empty.", code="empty_upload")


async def _read_capped(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLarge(limit)
    return data


async def read_images(request: Request, field: str, max_files: int, limit: int) -> list[bytes]:
    """The uploaded files: multipart field `field`, or the raw body when it is sent with an
    image (or octet-stream) content type. Nothing beyond `limit` bytes per file is read."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=max_files, max_fields=16, max_part_size=limit)
        except (MultiPartException, HTTPException) as exc:
            detail = str(getattr(exc, "detail", None) or getattr(exc, "message", exc))
            if "maximum size" in detail:
                raise UploadTooLarge(limit) from exc
            raise ServiceError(400, f"The multipart body cannot be read: {detail}") from exc
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
            files = [await _read_capped(upload, limit) for upload in uploads]
        finally:
            await form.close()
    elif content_type.startswith("image/") or content_type == "application/octet-stream":
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise UploadTooLarge(limit)
        files = [bytes(body)]
    else:
        raise ServiceError(
            415,
            "Send the image as multipart/form-data (field 'file') or as the raw body with an "
            "image content type.",
        )
    if any(len(data) == 0 for data in files):
        raise _empty()
    return files


def decode_upload(data: bytes, max_pixels: int) -> Image.Image:
    """The RGB image, or the 4xx envelope saying what is wrong with the bytes."""
    try:
        return decode_image(data, max_pixels=max_pixels, convert_grey=True)
    except NotAnImage as exc:
        raise ServiceError(
            415, "The file is not an image in a format we read (PNG, JPEG, TIFF, BMP, ...)."
        ) from exc
    except ImageTooLarge as exc:
        raise ServiceError(413, f"The image is too large: {exc}.") from exc
    except ImageError as exc:
        raise ServiceError(422, f"The image cannot be used: {exc}.", code="invalid_image") from exc
