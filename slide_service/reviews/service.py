"""Clinicians' reviews of an analysis: of a region (agree it is malignant, correct its label,
or dismiss it) and of the whole slide; the queue of analyses nobody has reviewed yet; and the
reviewed regions' top tiles as a training set in `ml.datasets`' `folders` layout. Every
review is audited in its own transaction."""

import io
import uuid
import zipfile
from datetime import datetime

from sqlalchemy import case, exists, func, select, tuple_
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import ServiceError
from slide_service.analyses import service as analyses
from slide_service.analyses.models import Analysis, Region, RegionReview, RegionTile, SlideReview
from slide_service.audit.service import record
from slide_service.reviews.schemas import (
    AnalysisReviewsOut,
    QueueItem,
    RegionReviewEntry,
    RegionReviewIn,
    ReviewQueuePage,
    SlideReviewIn,
    SlideReviewOut,
)
from slide_service.slides.models import Slide

# The export is built in memory: it is refused past this many bytes of tiles.
MAX_EXPORT_BYTES = 256 * 1024 * 1024
# Tiles read from the database at a time while the zip is built.
EXPORT_BATCH = 64


def _entry(review: RegionReview, region: Region) -> RegionReviewEntry:
    return RegionReviewEntry(
        id=review.id,
        reviewer=review.reviewer,
        verdict=review.verdict,  # type: ignore[arg-type]
        corrected_label=review.corrected_label,  # type: ignore[arg-type]
        comment=review.comment,
        created_at=review.created_at,
        region_id=region.id,
        region_rank=region.rank,
    )


async def review_region(
    session: AsyncSession,
    analysis_id: uuid.UUID,
    region_id: uuid.UUID,
    reviewer: uuid.UUID,
    body: RegionReviewIn,
) -> RegionReviewEntry:
    """Record a verdict on a region of a succeeded analysis."""
    await analyses.finished(session, analysis_id)
    region = await session.get(Region, region_id)
    if region is None or region.analysis_id != analysis_id:
        raise analyses.RegionNotFound()
    review = RegionReview(
        id=uuid.uuid4(),
        region_id=region.id,
        reviewer=reviewer,
        verdict=body.verdict,
        corrected_label=body.corrected_label,
        comment=body.comment,
    )
    session.add(review)
    await record(
        session,
        actor=reviewer,
        action="region.review",
        resource_type="region",
        resource_id=str(region.id),
        details={
            "analysis_id": str(analysis_id),
            "verdict": body.verdict,
            "corrected_label": body.corrected_label,
        },
    )
    await session.commit()
    await session.refresh(review)
    return _entry(review, region)


async def review_slide(
    session: AsyncSession, analysis_id: uuid.UUID, reviewer: uuid.UUID, body: SlideReviewIn
) -> SlideReviewOut:
    """Record a verdict on the whole slide, given a succeeded analysis of it."""
    analysis = await analyses.finished(session, analysis_id)
    review = SlideReview(
        id=uuid.uuid4(),
        analysis_id=analysis.id,
        reviewer=reviewer,
        verdict=body.verdict,
        comment=body.comment,
    )
    session.add(review)
    await record(
        session,
        actor=reviewer,
        action="slide.review",
        resource_type="analysis",
        resource_id=str(analysis.id),
        details={"slide_id": str(analysis.slide_id), "verdict": body.verdict},
    )
    await session.commit()
    await session.refresh(review)
    return SlideReviewOut.model_validate(review)


async def reviews(session: AsyncSession, analysis_id: uuid.UUID) -> AnalysisReviewsOut:
    await analyses.get(session, analysis_id)
    slide_reviews = (
        await session.scalars(
            select(SlideReview)
            .where(SlideReview.analysis_id == analysis_id)
            .order_by(SlideReview.created_at.desc(), SlideReview.id)
        )
    ).all()
    region_reviews = (
        await session.execute(
            select(RegionReview, Region)
            .join(Region, Region.id == RegionReview.region_id)
            .where(Region.analysis_id == analysis_id)
            .order_by(RegionReview.created_at.desc(), Region.rank)
        )
    ).all()
    return AnalysisReviewsOut(
        slide_reviews=[SlideReviewOut.model_validate(r) for r in slide_reviews],
        region_reviews=[_entry(review, region) for review, region in region_reviews],
    )


async def review_queue(session: AsyncSession, limit: int, offset: int) -> ReviewQueuePage:
    """Succeeded analyses without a slide review, the longest waiting first."""
    unreviewed = (
        select(Analysis, Slide.filename)
        .join(Slide, Slide.id == Analysis.slide_id)
        .where(
            Analysis.status == "succeeded",
            ~exists().where(SlideReview.analysis_id == Analysis.id),
        )
    )
    total = await session.scalar(select(func.count()).select_from(unreviewed.subquery()))
    rows = (
        await session.execute(
            unreviewed.order_by(
                Analysis.finished_at.asc().nulls_last(), Analysis.created_at, Analysis.id
            )
            .limit(limit)
            .offset(offset)
        )
    ).all()
    items = []
    for analysis, filename in rows:
        summary = analysis.summary or {}
        fraction = summary.get("tumour_area_fraction")
        items.append(
            QueueItem(
                analysis_id=analysis.id,
                slide_id=analysis.slide_id,
                filename=filename,
                model_version=analysis.model_version,
                finished_at=analysis.finished_at,
                highest_region=summary.get("highest_region"),
                tumour_area_fraction=None if fraction is None else float(fraction),
            )
        )
    return ReviewQueuePage(items=items, total=total or 0, limit=limit, offset=offset)


def export_name(slide_id: uuid.UUID, region_rank: int, tile_rank: int) -> str:
    """`<slide id's first 8>_<region rank>_<tile rank>.png`: `ml.datasets` takes the part
    before the first `_` as the group, so a slide's tiles stay on one side of a split."""
    return f"{slide_id.hex[:8]}_{region_rank}_{tile_rank}.png"


async def region_tiles_zip(session: AsyncSession) -> bytes:
    """The top tiles (not their Grad-CAM) of every reviewed region, in `benign/` and
    `malignant/`: agree is malignant, correct is the corrected label, dismiss is left out;
    a region's newest review decides. Built in memory, refused past `MAX_EXPORT_BYTES`."""
    latest = (
        select(RegionReview.region_id, RegionReview.verdict, RegionReview.corrected_label)
        .ext(distinct_on(RegionReview.region_id))
        .order_by(RegionReview.region_id, RegionReview.created_at.desc(), RegionReview.id)
        .subquery()
    )
    label = case((latest.c.verdict == "agree", "malignant"), else_=latest.c.corrected_label)
    tiles = (
        await session.execute(
            select(
                Analysis.id.label("analysis_id"),
                Analysis.slide_id,
                Region.rank.label("region_rank"),
                RegionTile.region_id,
                RegionTile.rank.label("tile_rank"),
                label.label("label"),
                func.octet_length(RegionTile.image_png).label("size"),
            )
            .select_from(latest)
            .join(Region, Region.id == latest.c.region_id)
            .join(Analysis, Analysis.id == Region.analysis_id)
            .join(RegionTile, RegionTile.region_id == Region.id)
            .where(latest.c.verdict != "dismiss", Analysis.status == "succeeded")
            # The newest analysis of a slide gets the plain names.
            .order_by(
                Analysis.slide_id,
                Analysis.finished_at.desc().nulls_last(),
                Analysis.id,
                Region.rank,
                RegionTile.rank,
            )
        )
    ).all()
    size = sum(int(t.size or 0) for t in tiles)
    if size > MAX_EXPORT_BYTES:
        raise ServiceError(
            409,
            f"The reviewed tiles come to {size} bytes, more than the export holds "
            f"({MAX_EXPORT_BYTES}).",
            code="export_too_large",
        )
    names: dict[tuple[uuid.UUID, int], str] = {}
    taken: set[str] = set()
    for t in tiles:
        name = f"{t.label}/{export_name(t.slide_id, t.region_rank, t.tile_rank)}"
        if name in taken:  # an older analysis of the same slide: same group, its own name
            name = name.removesuffix(".png") + f"_{t.analysis_id.hex[:8]}.png"
        taken.add(name)
        names[(t.region_id, t.tile_rank)] = name
    buffer = io.BytesIO()
    now = datetime.now()
    stamp = (now.year, now.month, now.day, now.hour, now.minute, now.second)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed
        keys = list(names)
        for start in range(0, len(keys), EXPORT_BATCH):
            batch = keys[start : start + EXPORT_BATCH]
            for region_id, rank, data in (
                await session.execute(
                    select(RegionTile.region_id, RegionTile.rank, RegionTile.image_png).where(
                        tuple_(RegionTile.region_id, RegionTile.rank).in_(batch)
                    )
                )
            ).all():
                info = zipfile.ZipInfo(names[(region_id, rank)], date_time=stamp)
                archive.writestr(info, data)
    return buffer.getvalue()
