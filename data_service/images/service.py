"""Images: checked, stored once per content, recorded; orphan files cleaned up."""

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


async def store(
    session: AsyncSession,
    files: ImageStore,
    data: bytes,
    patient_id: uuid.UUID | None,
    uploader: str,
    max_pixels: int,
) -> tuple[Image, bool]:
    """The image record for `data`, and whether it was created now. The same bytes uploaded
    again (even concurrently) give the existing record."""
    sha256 = hashlib.sha256(data).hexdigest()
    existing = await session.scalar(select(Image).where(Image.sha256 == sha256))
    if existing is not None:
        return existing, False
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
        uploaded_by=uuid.UUID(uploader),
    )
    session.add(image)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()  # another upload of the same bytes won the race
        winner = await session.scalar(select(Image).where(Image.sha256 == sha256))
        if winner is None:
            raise
        return winner, False
    await record(
        session, uploader, "image.stored", "image", image.id, {"sha256": sha256, "bytes": len(data)}
    )
    await session.refresh(image)
    return image, True


async def purge_orphans(session: AsyncSession, files: ImageStore, grace_s: float) -> int:
    """Delete files no row refers to (and abandoned temporary files), once older than
    `grace_s`, so an upload still between its file and its commit is left alone."""
    candidates = await asyncio.to_thread(lambda: list(files.files_older_than(grace_s)))
    removed = 0
    for start in range(0, len(candidates), 1000):
        chunk = candidates[start : start + 1000]
        names = [name for name, _ in chunk if not name.startswith(TEMP_PREFIX)]
        known = set(await session.scalars(select(Image.sha256).where(Image.sha256.in_(names))))
        for name, path in chunk:
            if name not in known:
                path.unlink(missing_ok=True)
                removed += 1
    if removed:
        logger.info("removed orphan image files", extra={"removed": removed})
    return removed
