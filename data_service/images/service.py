"""Images: checked, recorded once per upload, their bytes stored once per content; orphan
files cleaned up.

Each upload is its own record (who, which patient, when), so a prediction is filed under the
patient it was requested for even when the same bytes were sent for another patient before.
Only the file is shared: it is named by the SHA-256 of the bytes."""

import asyncio
import hashlib
import logging
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import ServiceError
from common.uploads import inspect_upload
from data_service.audit.service import record
from data_service.images.models import Image
from data_service.images.storage import TEMP_PREFIX, ImageStore
from data_service.patients import service as patients

logger = logging.getLogger("data_service.images")

FORMATS = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}


class ImageNotFound(ServiceError):
    def __init__(self) -> None:
        super().__init__(404, "No such image.", code="image_not_found")


def inspect(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """Content type (from the bytes, not the client's word), width and height. Refuses what
    is not a usable image without keeping its pixels (a PNG's are not even decompressed)."""
    header = inspect_upload(data, max_pixels)
    return FORMATS.get(header.format or "", "application/octet-stream"), header.width, header.height


async def get(session: AsyncSession, image_id: uuid.UUID) -> Image:
    image = await session.get(Image, image_id)
    if image is None:
        raise ImageNotFound()
    return image


class UploadKeyReused(ServiceError):
    def __init__(self) -> None:
        super().__init__(
            422,
            "This Idempotency-Key was used for another upload (other bytes or another "
            "patient); use a new key.",
            code="idempotency_key_reused",
        )


async def by_key(session: AsyncSession, uploader: uuid.UUID, key: str) -> Image | None:
    return await session.scalar(
        select(Image).where(Image.uploaded_by == uploader, Image.idempotency_key == key)
    )


def _same_upload(earlier: Image, sha256: str, patient_id: uuid.UUID | None) -> Image:
    """The record stored under a repeated key, when the repeat is the same upload."""
    if earlier.sha256 != sha256 or earlier.patient_id != patient_id:
        raise UploadKeyReused()
    return earlier


async def store(
    session: AsyncSession,
    files: ImageStore,
    data: bytes,
    patient_id: uuid.UUID | None,
    uploader: str,
    max_pixels: int,
    idempotency_key: str | None = None,
) -> tuple[Image, bool]:
    """A new record of this upload, and True; or, when the uploader repeats an
    `idempotency_key` (even concurrently), the record stored under it the first time, and
    False. Bytes stored before are not written again: their records share the file."""
    sha256 = hashlib.sha256(data).hexdigest()
    requester = uuid.UUID(uploader)
    if idempotency_key is not None:
        earlier = await by_key(session, requester, idempotency_key)
        if earlier is not None:
            return _same_upload(earlier, sha256, patient_id), False
    content_type, width, height = await asyncio.to_thread(inspect, data, max_pixels)
    if patient_id is not None:
        await patients.get(session, patient_id)
    # The file first, then the row: a crash in between leaves an orphan file (cleaned up
    # later), never a row pointing at nothing.
    await asyncio.to_thread(files.write, sha256, data)
    image = Image(
        sha256=sha256,
        content_type=content_type,
        width=width,
        height=height,
        byte_size=len(data),
        patient_id=patient_id,
        uploaded_by=requester,
        idempotency_key=idempotency_key,
    )
    session.add(image)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()  # the same key sent twice at once: the other one won
        earlier = await by_key(session, requester, idempotency_key) if idempotency_key else None
        if earlier is None:
            raise
        return _same_upload(earlier, sha256, patient_id), False
    await record(
        session,
        uploader,
        "image.stored",
        "image",
        image.id,
        {
            "sha256": sha256,
            "bytes": len(data),
            "patient_id": str(patient_id) if patient_id else None,
        },
    )
    return image, True


async def purge_orphans(session: AsyncSession, files: ImageStore, grace_s: float) -> int:
    """Delete files no record refers to (and abandoned temporary files), once older than
    `grace_s`, so an upload still between its file and its commit is left alone (writing
    bytes that are already stored renews the file's time for the same reason). A file
    shared by several records stays while any of them refers to it."""
    candidates = await asyncio.to_thread(lambda: list(files.files_older_than(grace_s)))
    removed = 0
    for start in range(0, len(candidates), 1000):
        chunk = candidates[start : start + 1000]
        names = [name for name, _ in chunk if not name.startswith(TEMP_PREFIX)]
        known = set(await session.scalars(select(Image.sha256).where(Image.sha256.in_(names))))
        for name, path in chunk:
            # Looked at again: an upload of these bytes may have renewed it since the listing.
            if name not in known and files.older_than(path, grace_s):
                path.unlink(missing_ok=True)
                removed += 1
    if removed:
        logger.info("removed orphan image files", extra={"removed": removed})
    return removed
