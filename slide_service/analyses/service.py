"""Analyses as the API sees them: start one (checks, then the job on the queue), read its
progress and results, cancel it. The work itself is the runner's, on a worker."""

import asyncio
import logging
import statistics
import uuid
from datetime import UTC, datetime

import numpy as np
from cachetools import LRUCache
from procrastinate import App
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import ServiceError
from slide_service.analyses import queue, results
from slide_service.analyses.grid import Grid, Scale, unknown_resolution
from slide_service.analyses.inference import ActiveModel, no_model_scale
from slide_service.analyses.models import (
    ACTIVE_STATUSES,
    Analysis,
    AnalysisMask,
    AnalysisResult,
    Region,
    RegionReview,
    RegionTile,
)
from slide_service.analyses.schemas import (
    AnalysisOut,
    AnalysisStatsOut,
    ErrorOut,
    ProgressOut,
    RegionOut,
    RegionReviewOut,
    TopTileOut,
)
from slide_service.audit.service import record
from slide_service.slides.models import Slide

logger = logging.getLogger("slide_service.analyses")


class AnalysisNotFound(ServiceError):
    def __init__(self) -> None:
        super().__init__(404, "No such analysis.", code="analysis_not_found")


class RegionNotFound(ServiceError):
    def __init__(self) -> None:
        super().__init__(404, "No such region in this analysis.", code="region_not_found")


def not_finished(status: str) -> ServiceError:
    return ServiceError(
        409, f"The analysis has no results: it is {status}.", code="analysis_not_finished"
    )


def scale_for(slide: Slide, model: ActiveModel) -> Scale:
    if slide.microns_per_pixel_x is None or slide.microns_per_pixel_y is None:
        raise unknown_resolution()
    if not model.microns_per_pixel or not model.patch_px:
        raise no_model_scale(model.version)
    return Scale(
        model_mpp=float(model.microns_per_pixel),
        patch_px=int(model.patch_px),
        input_side=model.input_side,
        slide_mpp_x=slide.microns_per_pixel_x,
        slide_mpp_y=slide.microns_per_pixel_y,
    )


async def start(
    session: AsyncSession,
    queue_app: App,
    slide: Slide,
    model: ActiveModel,
    user_id: uuid.UUID,
    max_active_per_user: int,
) -> Analysis:
    """Record the analysis and put its job on the queue."""
    scale = scale_for(slide, model)
    active = await session.scalar(
        select(func.count())
        .select_from(Analysis)
        .where(Analysis.requested_by == user_id, Analysis.status.in_(ACTIVE_STATUSES))
    )
    if (active or 0) >= max_active_per_user:
        raise ServiceError(
            429,
            f"You have {active} analyses waiting or running (at most {max_active_per_user}); "
            "start more when one has finished.",
            code="too_many_analyses",
        )
    analysis = Analysis(
        id=uuid.uuid4(),
        slide_id=slide.id,
        requested_by=user_id,
        status="queued",
        model_version=model.version,
        threshold=model.threshold,
        scale=scale.as_record(),
        skipped={},
        tiles_done=0,
        rate_base=0,
        attempts=0,
    )
    # Read before the flush: a rollback expires the slide, and reloading an attribute would
    # be I/O outside an await.
    slide_id = slide.id
    session.add(analysis)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        running = await session.scalar(
            select(Analysis.id).where(
                Analysis.slide_id == slide_id, Analysis.status.in_(ACTIVE_STATUSES)
            )
        )
        raise ServiceError(
            409,
            f"This slide is being analysed already (analysis {running}).",
            code="analysis_in_progress",
        ) from exc
    await record(
        session,
        user_id,
        "analysis_started",
        "analysis",
        analysis.id,
        {"slide_id": str(slide.id), "model_version": model.version},
    )
    await session.commit()
    try:
        analysis.job_id = await queue.defer(queue_app, str(analysis.id), str(user_id))
    except Exception as exc:
        # Without its job the analysis would wait forever: it is removed, and the caller told.
        logger.warning("analysis %s not queued: %s", analysis.id, type(exc).__name__)
        await session.delete(analysis)
        await session.commit()
        raise ServiceError(
            503, "The analysis queue cannot be reached now.", code="queue_unavailable"
        ) from exc
    await session.commit()
    return analysis


async def get(session: AsyncSession, analysis_id: uuid.UUID) -> Analysis:
    analysis = await session.get(Analysis, analysis_id)
    if analysis is None:
        raise AnalysisNotFound()
    return analysis


async def list_for_slide(session: AsyncSession, slide_id: uuid.UUID) -> list[Analysis]:
    return list(
        (
            await session.scalars(
                select(Analysis)
                .where(Analysis.slide_id == slide_id)
                .order_by(Analysis.created_at.desc())
                .limit(100)
            )
        ).all()
    )


async def cancel(
    session: AsyncSession,
    queue_app: App,
    analysis_id: uuid.UUID,
    user_id: uuid.UUID,
) -> Analysis:
    analysis = (
        await session.execute(select(Analysis).where(Analysis.id == analysis_id).with_for_update())
    ).scalar_one_or_none()
    if analysis is None:
        raise AnalysisNotFound()
    if analysis.status not in ACTIVE_STATUSES:
        raise ServiceError(
            409, f"The analysis is {analysis.status}: nothing to cancel.", code="not_cancellable"
        )
    analysis.status = "cancelled"
    analysis.finished_at = datetime.now(UTC)
    await record(session, user_id, "analysis_cancelled", "analysis", analysis.id, {})
    await session.commit()
    if analysis.job_id is not None:
        try:
            await queue.cancel(queue_app, analysis.job_id)
        except Exception as exc:
            # The worker sees the status at its next batch and stops there.
            logger.warning("job %s not told to abort: %s", analysis.job_id, type(exc).__name__)
    return analysis


def to_out(analysis: Analysis, now: datetime | None = None) -> AnalysisOut:
    now = now or datetime.now(UTC)
    total = analysis.tiles_total
    done = analysis.tiles_done
    rate = None
    if analysis.status == "running" and analysis.rate_since is not None:
        elapsed = (now - analysis.rate_since).total_seconds()
        if elapsed > 0 and done > analysis.rate_base:
            rate = (done - analysis.rate_base) / elapsed
    elif analysis.status == "succeeded" and analysis.summary:
        rate = analysis.summary.get("tiles_per_s")
    eta = (
        (total - done) / rate
        if rate and total is not None and analysis.status == "running"
        else None
    )
    error = None
    if analysis.error_code:
        error = ErrorOut(code=analysis.error_code, message=analysis.error_message or "")
    return AnalysisOut(
        id=analysis.id,
        slide_id=analysis.slide_id,
        status=analysis.status,  # type: ignore[arg-type]
        requested_by=analysis.requested_by,
        model_version=analysis.model_version,
        threshold=analysis.threshold,
        created_at=analysis.created_at,
        started_at=analysis.started_at,
        finished_at=analysis.finished_at,
        attempts=analysis.attempts,
        progress=ProgressOut(
            tiles_done=done,
            tiles_total=total,
            fraction=(done / total if total else (1.0 if total == 0 else None)),
            tiles_per_s=None if rate is None else round(rate, 2),
            eta_s=None if eta is None else round(eta, 1),
        ),
        scale=analysis.scale,
        grid=(
            {"cols": analysis.grid_cols, "rows": analysis.grid_rows}
            if analysis.grid_cols is not None and analysis.grid_rows is not None
            else None
        ),
        error=error,
        summary=analysis.summary,
    )


async def finished(session: AsyncSession, analysis_id: uuid.UUID) -> Analysis:
    analysis = await get(session, analysis_id)
    if analysis.status != "succeeded":
        raise not_finished(analysis.status)
    return analysis


async def regions(session: AsyncSession, analysis_id: uuid.UUID) -> list[RegionOut]:
    await finished(session, analysis_id)
    found = (
        await session.scalars(
            select(Region).where(Region.analysis_id == analysis_id).order_by(Region.rank)
        )
    ).all()
    ids = [region.id for region in found]
    tiles: dict[uuid.UUID, list[TopTileOut]] = {}
    for tile in (
        await session.execute(
            select(
                RegionTile.region_id,
                RegionTile.rank,
                RegionTile.x,
                RegionTile.y,
                RegionTile.size,
                RegionTile.probability,
                RegionTile.gradcam_png.is_not(None).label("has_gradcam"),
            )
            .where(RegionTile.region_id.in_(ids))
            .order_by(RegionTile.region_id, RegionTile.rank)
        )
    ).all():
        tiles.setdefault(tile.region_id, []).append(TopTileOut.model_validate(tile))
    reviews: dict[uuid.UUID, RegionReviewOut] = {}
    for review in (
        await session.scalars(
            select(RegionReview)
            .where(RegionReview.region_id.in_(ids))
            .order_by(RegionReview.region_id, RegionReview.created_at.desc())
            .distinct(RegionReview.region_id)
        )
    ).all():
        reviews[review.region_id] = RegionReviewOut.model_validate(review)
    return [
        RegionOut(
            id=region.id,
            rank=region.rank,
            area_mm2=region.area_mm2,
            peak_probability=region.peak_probability,
            mean_probability=region.mean_probability,
            tile_count=region.tile_count,
            bounds=region.bounds,
            geometry=region.geometry,
            top_tiles=tiles.get(region.id, []),
            review=reviews.get(region.id),
        )
        for region in found
    ]


async def region_tile(
    session: AsyncSession, analysis_id: uuid.UUID, region_id: uuid.UUID, rank: int
) -> RegionTile:
    tile = (
        await session.execute(
            select(RegionTile)
            .join(Region, Region.id == RegionTile.region_id)
            .where(
                Region.analysis_id == analysis_id,
                RegionTile.region_id == region_id,
                RegionTile.rank == rank,
            )
        )
    ).scalar_one_or_none()
    if tile is None:
        raise RegionNotFound()
    return tile


async def result_arrays(session: AsyncSession, analysis: Analysis) -> tuple[np.ndarray, np.ndarray]:
    """The probabilities (float32, NaN where not analysed) and reason codes over the grid."""
    stored = await session.get(AnalysisResult, analysis.id)
    if stored is None or analysis.grid_rows is None or analysis.grid_cols is None:
        raise not_finished(analysis.status)
    shape = (analysis.grid_rows, analysis.grid_cols)
    probabilities = np.frombuffer(stored.probabilities, dtype="<f2").astype(np.float32)
    return probabilities.reshape(shape), np.frombuffer(stored.reasons, dtype=np.uint8).reshape(
        shape
    )


async def mask_png(session: AsyncSession, analysis_id: uuid.UUID) -> bytes:
    await get(session, analysis_id)
    stored = await session.get(AnalysisMask, analysis_id)
    if stored is None:
        raise ServiceError(
            409, "The tissue mask is not made yet: the analysis has not started.", code="no_mask"
        )
    return stored.mask_png


async def stats(session: AsyncSession) -> AnalysisStatsOut:
    by_status = dict(
        (
            await session.execute(select(Analysis.status, func.count()).group_by(Analysis.status))
        ).all()
    )
    slides = await session.scalar(
        select(func.count(func.distinct(Analysis.slide_id))).where(Analysis.status == "succeeded")
    )
    tiles = await session.scalar(
        select(func.coalesce(func.sum(Analysis.tiles_done), 0)).where(
            Analysis.status == "succeeded"
        )
    )
    recent = (
        await session.scalars(
            select(Analysis.summary["tiles_per_s"].as_float())
            .where(Analysis.status == "succeeded", Analysis.summary["tiles_per_s"].is_not(None))
            .order_by(Analysis.finished_at.desc())
            .limit(20)
        )
    ).all()
    rates = [rate for rate in recent if rate is not None]
    return AnalysisStatsOut(
        slides_analysed=slides or 0,
        analyses={status: int(count) for status, count in by_status.items()},
        tiles_analysed=int(tiles or 0),
        tiles_per_s=round(statistics.median(rates), 2) if rates else None,
    )


class HeatmapCache:
    """Deep Zoom heatmaps of finished analyses, built once each and kept in a small LRU."""

    def __init__(self, entries: int = 16) -> None:
        self._images: LRUCache[uuid.UUID, results.DeepZoomImage] = LRUCache(entries)

    async def get(self, session: AsyncSession, analysis_id: uuid.UUID) -> "results.DeepZoomImage":
        image = self._images.get(analysis_id)
        if image is None:
            analysis = await finished(session, analysis_id)
            slide = await session.get(Slide, analysis.slide_id)
            assert slide is not None and analysis.scale is not None
            probabilities, _ = await result_arrays(session, analysis)
            scale = Scale.from_record(analysis.scale)
            grid = Grid.over(slide.width, slide.height, scale)
            picture = await asyncio.to_thread(
                results.heatmap_image, probabilities, grid, (slide.width, slide.height)
            )
            image = results.DeepZoomImage(picture)
            self._images[analysis_id] = image
        return image
