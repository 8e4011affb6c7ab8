"""Slides: streamed to disk within limits, checked by OpenSlide, recorded once per upload,
their files stored once per content and removed with their last record.

Each upload is its own record (who, which patient, when); only the folder of files is
shared, named by the SHA-256 of the uploaded bytes. Placing a folder and inserting its
record, like deleting a record and removing its folder, run under a transaction-scoped
advisory lock on the hash, so a delete never removes the folder an upload is reusing."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from common.db import page_with_total
from common.errors import ServiceError
from slide_service.audit.service import record
from slide_service.slides import formats
from slide_service.slides.models import Slide
from slide_service.slides.storage import SlideStore, Upload

logger = logging.getLogger("slide_service.slides")

# Chunks are gathered to this size before one trip to a worker thread hashes and writes
# them: a thread hop per network chunk (often 64 KiB) would cost more than the work.
WRITE_BATCH_BYTES = 8 * 1024 * 1024


class SlideNotFound(ServiceError):
    def __init__(self) -> None:
        super().__init__(404, "No such slide.", code="slide_not_found")


def too_large(limit: int) -> ServiceError:
    return ServiceError(
        413, f"The slide is larger than {limit / 1024**3:.1f} GiB.", code="payload_too_large"
    )


def incomplete() -> ServiceError:
    return ServiceError(
        400,
        "The upload ended before all its bytes arrived; nothing was stored. Send it again.",
        code="upload_incomplete",
    )


async def receive(
    store: SlideStore,
    chunks: AsyncIterator[bytes],
    filename: str,
    declared_length: int | None,
    limit: int,
) -> Upload:
    """Stream the body into a new upload folder, hashing and counting as it comes: refused
    past `limit` (before reading, when the declared length says so) and when fewer bytes
    arrive than declared. On any failure the folder is gone."""
    if declared_length is not None and declared_length > limit:
        raise too_large(limit)
    upload = store.new_upload()
    try:
        pending: list[bytes] = []
        pending_bytes = 0
        async for chunk in chunks:
            if not chunk:
                continue
            pending.append(chunk)
            pending_bytes += len(chunk)
            if upload.size + pending_bytes > limit:
                raise too_large(limit)
            if pending_bytes >= WRITE_BATCH_BYTES:
                await _write(upload, pending, filename)
                pending, pending_bytes = [], 0
        if pending:
            await _write(upload, pending, filename)
        if upload.size == 0:
            raise ServiceError(400, "The upload is empty.", code="empty_upload")
        if declared_length is not None and upload.size != declared_length:
            raise incomplete()
        await run_in_threadpool(upload.finish)
    except BaseException:
        await run_in_threadpool(upload.discard)
        raise
    return upload


async def _write(upload: Upload, chunks: list[bytes], filename: str) -> None:
    if upload.path is None:
        # A zip is extracted later; anything else is the slide file itself.
        head = chunks[0][:4] if len(chunks[0]) >= 4 else b"".join(chunks)[:4]
        is_zip = head == formats.ZIP_MAGIC
        upload.open("upload.zip" if is_zip else f"content/{formats.stored_name(filename)}")
    await run_in_threadpool(upload.write, chunks)


def inspect(
    upload: Upload, max_members: int, max_bytes: int, max_read_pixels: int
) -> tuple[str, formats.SlideFacts]:
    """The file to open (relative to the upload's content folder) and what it is."""
    assert upload.path is not None
    if upload.path.name == "upload.zip":
        formats.extract_zip(upload.path, upload.content, max_members, max_bytes)
        upload.path.unlink()
        entry = formats.find_entry(upload.content)
    else:
        entry = upload.path
    return entry.relative_to(upload.content).as_posix(), formats.read_facts(entry, max_read_pixels)


async def _lock_content(session: AsyncSession, sha256: str) -> None:
    # 60 bits of the hash as the lock's key: collisions only serialise unrelated slides.
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": int(sha256[:15], 16)})


async def store(
    session: AsyncSession,
    files: SlideStore,
    upload: Upload,
    *,
    patient_id: uuid.UUID,
    filename: str,
    uploader: str,
    microns_per_pixel: float | None,
    max_archive_members: int,
    max_archive_bytes: int,
    max_read_pixels: int,
) -> Slide:
    """Check the received upload, place its files (or find the same content already there),
    record it and commit. Whatever fails, the upload's folder is removed."""
    placed: Path | None = None
    try:
        entry, facts = await run_in_threadpool(
            inspect, upload, max_archive_members, max_archive_bytes, max_read_pixels
        )
        sha256 = upload.sha256.hexdigest()
        await _lock_content(session, sha256)
        earlier = await session.scalar(
            select(Slide.content_path).where(Slide.sha256 == sha256).limit(1)
        )
        if earlier is not None and files.path_of(earlier).is_file():
            content_path = earlier
        else:
            # Nothing records this content: a folder at its address is a leftover.
            leftover = await run_in_threadpool(files.set_aside, sha256)
            if leftover is not None:
                await run_in_threadpool(files.discard, leftover)
            placed = await run_in_threadpool(files.place, upload.content, sha256)
            content_path = (placed / entry).relative_to(files.root).as_posix()
        mpp_x, mpp_y, source = _resolution(facts, microns_per_pixel)
        slide = Slide(
            id=uuid.uuid4(),
            patient_id=patient_id,
            filename=filename,
            format=facts.format,
            sha256=sha256,
            content_path=content_path,
            width=facts.width,
            height=facts.height,
            level_count=len(facts.levels),
            levels=facts.levels,
            microns_per_pixel_x=mpp_x,
            microns_per_pixel_y=mpp_y,
            resolution_source=source,
            objective_power=facts.objective_power,
            associated_images=facts.associated_images,
            size_bytes=upload.size,
            uploaded_by=uuid.UUID(uploader),
        )
        session.add(slide)
        await record(
            session,
            uploader,
            "slide_uploaded",
            "slide",
            slide.id,
            {"patient_id": str(patient_id), "sha256": sha256, "format": facts.format},
        )
        await session.commit()
    except BaseException:
        if placed is not None:
            await asyncio.shield(_discard_unrecorded(session, files, placed))
        raise
    finally:
        await run_in_threadpool(upload.discard)
    await session.refresh(slide)
    return slide


async def _discard_unrecorded(session: AsyncSession, files: SlideStore, placed: Path) -> None:
    """Remove the folder this upload placed, unless a record now names it. The failed commit
    released the content's lock, so a concurrent upload of the same bytes may have committed
    a record for that very folder since; check under the lock again. When the database cannot
    answer, the folder stays: the next upload of that content replaces a folder no record
    names."""
    sha256 = placed.name
    try:
        await session.rollback()
        await _lock_content(session, sha256)
        recorded = await session.scalar(select(Slide.id).where(Slide.sha256 == sha256).limit(1))
        if recorded is None:
            await run_in_threadpool(files.discard, placed)
        await session.rollback()
    except Exception as exc:
        logger.warning("kept %s after a failed upload: %s", placed, type(exc).__name__)


def _resolution(
    facts: formats.SlideFacts, uploader_mpp: float | None
) -> tuple[float | None, float | None, str]:
    """Microns per pixel from the file; else the uploader's; else unknown (analysis must then
    refuse to assume a scale)."""
    if facts.microns_per_pixel_x is not None:
        return (
            facts.microns_per_pixel_x,
            facts.microns_per_pixel_y or facts.microns_per_pixel_x,
            "file",
        )
    if uploader_mpp is not None:
        return uploader_mpp, uploader_mpp, "uploader"
    return None, None, "unknown"


async def get(session: AsyncSession, slide_id: uuid.UUID) -> Slide:
    slide = await session.get(Slide, slide_id)
    if slide is None:
        raise SlideNotFound()
    return slide


async def page(
    session: AsyncSession, patient_id: uuid.UUID | None, limit: int, offset: int
) -> tuple[list[Slide], int]:
    query = select(Slide).order_by(Slide.created_at.desc(), Slide.id)
    if patient_id is not None:
        query = query.where(Slide.patient_id == patient_id)
    return await page_with_total(session, query, limit, offset)


async def delete(session: AsyncSession, files: SlideStore, slide_id: uuid.UUID, who: str) -> Slide:
    """Delete the record (audited); the files go with the last record of their content."""
    slide = await get(session, slide_id)
    await _lock_content(session, slide.sha256)
    await session.delete(slide)
    await record(session, who, "slide_deleted", "slide", slide.id, {"sha256": slide.sha256})
    await session.flush()
    remaining = await session.scalar(
        select(func.count()).select_from(Slide).where(Slide.sha256 == slide.sha256)
    )
    aside = await run_in_threadpool(files.set_aside, slide.sha256) if remaining == 0 else None
    try:
        await session.commit()
    except BaseException:
        if aside is not None:
            await asyncio.shield(run_in_threadpool(files.restore, aside, slide.sha256))
        raise
    if aside is not None:
        await run_in_threadpool(files.discard, aside)
    return slide


async def read_associated(session: AsyncSession, slide_id: uuid.UUID, name: str, who: str) -> Slide:
    """The slide, once the read of its associated image `name` is audited (label and macro
    images show the paper label, which carries patient identifiers on real slides)."""
    slide = await get(session, slide_id)
    if name not in slide.associated_images:
        raise ServiceError(
            404,
            "The slide has no associated image of that name.",
            code="associated_image_not_found",
        )
    await record(session, who, "associated_image_read", "slide", slide.id, {"name": name})
    await session.commit()
    return slide
