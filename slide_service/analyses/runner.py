"""One analysis, run by a worker: tissue mask and grid first (written once), then the tissue
tiles in batches, each batch a checkpoint, then the results.

Every batch's results and the progress they add are written in one transaction, keyed by
the batch's index: a worker killed at any point leaves either the whole batch or none of
it, and the job resumed on another worker does only the batches not yet written. So every
tile counts exactly once, however often the job is interrupted. The grid is cut from the
mask stored at the first run, never recomputed, so a resumed job cuts the same tiles.

Tiles are read (a thread pool) while the previous batch is at the inference service, so
reading and predicting overlap."""

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import openslide
from numpy.typing import NDArray
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert

from common.db import Database
from slide_service.analyses import results
from slide_service.analyses.grid import Grid, Scale, TileReader, read_tissue_mask, tissue_tiles
from slide_service.analyses.inference import BatchAnswer, BatchClient, ModelChanged, gradcam_map
from slide_service.analyses.models import (
    Analysis,
    AnalysisChunk,
    AnalysisMask,
    AnalysisResult,
    Region,
    RegionTile,
)
from slide_service.slides.models import Slide
from slide_service.slides.storage import SlideStore

logger = logging.getLogger("slide_service.analyses")

# Per-tile codes in the stored arrays: 0 analysed, 255 background (no tissue under the mask),
# else the reason the quality checks refused the tile (`ml.assessment.Reason`).
ANALYSED = 0
BACKGROUND = 255
REASON_CODES = {
    "no_tissue": 1,
    "out_of_focus": 2,
    "not_h_and_e": 3,
    "pen_or_artefact": 4,
    "exposure": 5,
    "out_of_distribution": 6,
    "near_threshold": 7,
}
REASON_NAMES = {code: name for name, code in REASON_CODES.items()}
UNKNOWN_REASON = 254


class AnalysisFailed(Exception):
    """The analysis cannot succeed (a corrupt slide, a refused batch): fails with `code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AnalysisStopped(Exception):
    """The analysis was cancelled, or finished elsewhere, while this worker ran it."""


@dataclass(frozen=True)
class Job:
    """What a run needs of the analysis and its slide, read once at its start."""

    id: uuid.UUID
    requested_by: str
    model_version: str
    threshold: float
    scale: Scale
    slide_path: Path
    slide_size: tuple[int, int]
    tiles_done: int


@dataclass
class Plan:
    grid: Grid
    tissue: NDArray  # grid indices of the tissue tiles, ascending
    batch: int

    @property
    def batches(self) -> int:
        return -(-len(self.tissue) // self.batch)

    def indices(self, chunk: int) -> NDArray:
        return self.tissue[chunk * self.batch : (chunk + 1) * self.batch]


def _now() -> datetime:
    return datetime.now(UTC)


def codes_of(answer: BatchAnswer) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
    """P(malignant) per tile (NaN where refused) and the reason codes, from one batch."""
    count = len(answer.items)
    probabilities = np.full(count, np.nan, dtype=np.float32)
    codes = np.zeros(count, dtype=np.uint8)
    for position, item in enumerate(answer.items):
        if item["assessment"] == "not_assessable":
            reasons = item.get("reasons") or [None]
            codes[position] = REASON_CODES.get(reasons[0], UNKNOWN_REASON)
        else:
            probabilities[position] = item["malignant_probability"]
    return probabilities, codes


def skipped_counts(codes: NDArray[np.uint8]) -> dict[str, int]:
    values, counts = np.unique(codes[codes != ANALYSED], return_counts=True)
    named: dict[str, int] = {}
    # Codes without a reason of their own are added up under "other", not overwritten.
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        name = REASON_NAMES.get(value, "other")
        named[name] = named.get(name, 0) + count
    return named


class AnalysisRunner:
    def __init__(
        self,
        database: Database,
        store: SlideStore,
        batches: BatchClient,
        *,
        batch_tiles: int,
        read_threads: int = 4,
    ) -> None:
        self.database = database
        self.store = store
        self.batches = batches
        self.batch_tiles = batch_tiles
        self.read_threads = read_threads
        # Called with the number of tiles of each batch written (metrics).
        self.on_batch: Callable[[int, int], None] = lambda analysed, skipped: None

    async def run(self, analysis_id: uuid.UUID, should_stop: Callable[[], bool] = bool) -> bool:
        """Run (or resume) the analysis; False when there was nothing to run (cancelled or
        finished already)."""
        job = await self._start(analysis_id)
        if job is None:
            return False
        try:
            slide = await asyncio.to_thread(openslide.OpenSlide, job.slide_path)
        except (openslide.OpenSlideError, OSError) as exc:
            logger.info("analysis %s: the slide cannot be opened: %s", job.id, exc)
            raise AnalysisFailed(
                "corrupt_slide", "The slide file cannot be read (damaged or missing)."
            ) from exc
        try:
            plan = await self._plan(job, slide)
            reader = TileReader(slide, plan.grid, job.scale.input_side, self.read_threads)
            try:
                await self._analyse(job, plan, reader, should_stop)
                await self._finish(job, plan, reader)
            finally:
                await asyncio.to_thread(reader.close)
        except openslide.OpenSlideError as exc:
            raise AnalysisFailed(
                "corrupt_slide", "The slide's pixels cannot be read: the file is damaged."
            ) from exc
        finally:
            await asyncio.to_thread(slide.close)
        return True

    async def _start(self, analysis_id: uuid.UUID) -> Job | None:
        async with self.database.sessions() as session, session.begin():
            found = (
                await session.execute(
                    select(Analysis, Slide)
                    .join(Slide, Slide.id == Analysis.slide_id)
                    .where(Analysis.id == analysis_id)
                    .with_for_update(of=Analysis)
                )
            ).one_or_none()
            if found is None:
                return None
            analysis, slide = found
            if analysis.status not in ("queued", "running"):
                return None
            now = _now()
            analysis.status = "running"
            analysis.attempts += 1
            analysis.started_at = analysis.started_at or now
            analysis.rate_since = now
            analysis.rate_base = analysis.tiles_done
            analysis.error_code = analysis.error_message = None
            assert analysis.scale is not None and analysis.model_version is not None
            return Job(
                id=analysis.id,
                requested_by=str(analysis.requested_by),
                model_version=analysis.model_version,
                threshold=float(analysis.threshold or 0.5),
                scale=Scale.from_record(analysis.scale),
                slide_path=self.store.path_of(slide.content_path),
                slide_size=(slide.width, slide.height),
                tiles_done=analysis.tiles_done,
            )

    async def _plan(self, job: Job, slide: openslide.OpenSlide) -> Plan:
        grid = Grid.over(*job.slide_size, job.scale)
        async with self.database.sessions() as session:
            stored = await session.get(AnalysisMask, job.id)
        if stored is not None:
            tissue = np.frombuffer(stored.tissue_tiles, dtype="<u4")
            return Plan(grid, tissue, self.batch_tiles)
        started = time.perf_counter()
        mask = await asyncio.to_thread(read_tissue_mask, slide, grid.tile_width)
        tissue = tissue_tiles(mask, grid)
        png = await asyncio.to_thread(mask.png)
        logger.info(
            "analysis %s: mask %dx%d in %.2f s, %d tissue tiles of %d",
            job.id,
            mask.mask.shape[1],
            mask.mask.shape[0],
            time.perf_counter() - started,
            len(tissue),
            grid.cols * grid.rows,
        )
        async with self.database.sessions() as session, session.begin():
            inserted = await session.execute(
                insert(AnalysisMask)
                .values(
                    analysis_id=job.id,
                    mask_png=png,
                    mask_downsample=mask.downsample_x,
                    tissue_tiles=tissue.astype("<u4").tobytes(),
                )
                .on_conflict_do_nothing()
                .returning(AnalysisMask.analysis_id)
            )
            if inserted.scalar_one_or_none() is None:  # written by an earlier run meanwhile
                raise AnalysisStopped()
            await session.execute(
                update(Analysis)
                .where(Analysis.id == job.id)
                .values(grid_cols=grid.cols, grid_rows=grid.rows, tiles_total=len(tissue))
            )
        return Plan(grid, tissue, self.batch_tiles)

    async def _analyse(
        self, job: Job, plan: Plan, reader: TileReader, should_stop: Callable[[], bool]
    ) -> None:
        async with self.database.sessions() as session:
            written = set(
                (
                    await session.scalars(
                        select(AnalysisChunk.chunk_index).where(AnalysisChunk.analysis_id == job.id)
                    )
                ).all()
            )
        todo = [chunk for chunk in range(plan.batches) if chunk not in written]
        if not todo:
            return
        # One batch read ahead while the one before it is predicted.
        next_read = asyncio.ensure_future(
            asyncio.to_thread(reader.read_many, plan.indices(todo[0]))
        )
        try:
            for position, chunk in enumerate(todo):
                patches = await next_read
                if position + 1 < len(todo):
                    next_read = asyncio.ensure_future(
                        asyncio.to_thread(reader.read_many, plan.indices(todo[position + 1]))
                    )
                if should_stop():
                    raise AnalysisStopped()
                answer = await self.batches.predict(patches, job.requested_by)
                if answer.model_version != job.model_version:
                    raise ModelChanged(answer.model_version)
                probabilities, codes = codes_of(answer)
                await self._checkpoint(job, chunk, probabilities, codes)
        finally:
            if not next_read.done():
                next_read.cancel()

    async def _checkpoint(
        self, job: Job, chunk: int, probabilities: NDArray[np.float32], codes: NDArray[np.uint8]
    ) -> None:
        skipped = skipped_counts(codes)
        async with self.database.sessions() as session, session.begin():
            inserted = await session.execute(
                insert(AnalysisChunk)
                .values(
                    analysis_id=job.id,
                    chunk_index=chunk,
                    probabilities=probabilities.astype("<f4").tobytes(),
                    reasons=codes.tobytes(),
                )
                .on_conflict_do_nothing()
                .returning(AnalysisChunk.chunk_index)
            )
            if inserted.scalar_one_or_none() is None:
                return  # this batch counted already
            analysis = (
                await session.execute(
                    select(Analysis).where(Analysis.id == job.id).with_for_update()
                )
            ).scalar_one_or_none()
            if analysis is None or analysis.status != "running":
                await session.rollback()
                raise AnalysisStopped()
            merged = dict(analysis.skipped or {})
            for reason, count in skipped.items():
                merged[reason] = merged.get(reason, 0) + count
            analysis.skipped = merged
            analysis.tiles_done += len(codes)
        self.on_batch(int((codes == ANALYSED).sum()), int((codes != ANALYSED).sum()))

    async def _finish(self, job: Job, plan: Plan, reader: TileReader) -> None:
        rows, cols = plan.grid.rows, plan.grid.cols
        probabilities = np.full(rows * cols, np.nan, dtype=np.float32)
        codes = np.full(rows * cols, BACKGROUND, dtype=np.uint8)
        async with self.database.sessions() as session:
            chunks = (
                await session.scalars(
                    select(AnalysisChunk)
                    .where(AnalysisChunk.analysis_id == job.id)
                    .order_by(AnalysisChunk.chunk_index)
                )
            ).all()
        if [c.chunk_index for c in chunks] != list(range(plan.batches)):
            raise AnalysisStopped()  # another run of the job is finishing it
        if plan.batches:
            probabilities[plan.tissue] = np.concatenate(
                [np.frombuffer(c.probabilities, dtype="<f4") for c in chunks]
            )
            codes[plan.tissue] = np.concatenate(
                [np.frombuffer(c.reasons, dtype=np.uint8) for c in chunks]
            )
        grid_probabilities = probabilities.reshape(rows, cols)
        slide_mpp = (job.scale.slide_mpp_x, job.scale.slide_mpp_y)
        regions, region_count = results.find_regions(
            grid_probabilities, job.threshold, plan.grid, job.slide_size, slide_mpp
        )
        tiles = await self._top_tiles(job, regions, reader)
        summary = self._summary(job, plan, codes, grid_probabilities, regions, region_count)
        async with self.database.sessions() as session, session.begin():
            analysis = (
                await session.execute(
                    select(Analysis).where(Analysis.id == job.id).with_for_update()
                )
            ).scalar_one_or_none()
            if analysis is None or analysis.status != "running":
                raise AnalysisStopped()
            await session.execute(delete(Region).where(Region.analysis_id == job.id))
            arrays = {
                "probabilities": grid_probabilities.astype("<f2").tobytes(),
                "reasons": codes.tobytes(),
            }
            await session.execute(
                insert(AnalysisResult)
                .values(analysis_id=job.id, **arrays)
                .on_conflict_do_update(
                    index_elements=[AnalysisResult.analysis_id],
                    set_=arrays,
                )
            )
            for region in regions:
                row = Region(
                    analysis_id=job.id,
                    rank=region.rank,
                    area_mm2=region.area_mm2,
                    peak_probability=region.peak_probability,
                    mean_probability=region.mean_probability,
                    tile_count=len(region.tiles),
                    bounds=region.bounds,
                    geometry=results.geometry_of(region.polygon),
                )
                session.add(row)
                await session.flush()
                if region.rank == 1:
                    summary["highest_region"] = {
                        "id": str(row.id),
                        "rank": 1,
                        "peak_probability": region.peak_probability,
                        "area_mm2": region.area_mm2,
                    }
                for tile in tiles.get(region.rank, []):
                    session.add(RegionTile(region_id=row.id, **tile))
            now = _now()
            # This attempt's rate: the tiles it did over the time it ran.
            elapsed = (now - (analysis.rate_since or now)).total_seconds()
            done_here = analysis.tiles_done - analysis.rate_base
            summary["tiles_per_s"] = round(done_here / elapsed, 2) if elapsed > 0 else None
            summary["seconds"] = round((now - (analysis.started_at or now)).total_seconds(), 2)
            analysis.summary = summary
            analysis.status = "succeeded"
            analysis.finished_at = now
            await session.execute(delete(AnalysisChunk).where(AnalysisChunk.analysis_id == job.id))

    async def _top_tiles(
        self, job: Job, regions: list[results.RegionFound], reader: TileReader
    ) -> dict[int, list[dict[str, Any]]]:
        """Each region's top tiles with their Grad-CAM, all regions' in one batch call."""
        picked = [
            (region.rank, rank, int(index))
            for region in regions
            for rank, index in enumerate(region.tiles[: results.TOP_TILES_PER_REGION], start=1)
        ]
        if not picked:
            return {}
        indices = np.array([index for _, _, index in picked], dtype=np.uint32)
        patches = await asyncio.to_thread(reader.read_many, indices)
        answer = await self.batches.predict(patches, job.requested_by, heatmap=True, quality=False)
        width, _ = reader.grid.size()
        found: dict[int, list[dict[str, Any]]] = {}
        for (region_rank, rank, index), patch, item in zip(
            picked, patches, answer.items, strict=True
        ):
            x, y = reader.grid.origin(index)
            heat = gradcam_map(item)
            found.setdefault(region_rank, []).append(
                {
                    "rank": rank,
                    "x": x,
                    "y": y,
                    "size": width,
                    "probability": float(item["malignant_probability"]),
                    "image_png": results.png_bytes(results.Image.fromarray(patch, "RGB")),
                    "gradcam_png": None
                    if heat is None
                    else results.gradcam_overlay_png(patch, heat),
                }
            )
        return found

    @staticmethod
    def _summary(
        job: Job,
        plan: Plan,
        codes: NDArray[np.uint8],
        probabilities: NDArray[np.float32],
        regions: list[results.RegionFound],
        region_count: int,
    ) -> dict[str, Any]:
        assessed = int((codes == ANALYSED).sum())
        above = int((np.nan_to_num(probabilities, nan=-1.0) >= job.threshold).sum())
        tile_mm2 = (
            plan.grid.tile_width
            * job.scale.slide_mpp_x
            * plan.grid.tile_height
            * job.scale.slide_mpp_y
        ) / 1e6
        return {
            "tiles_total": len(plan.tissue),
            "tiles_assessed": assessed,
            "tiles_skipped": skipped_counts(codes[(codes != BACKGROUND)]),
            "background_tiles": int((codes == BACKGROUND).sum()),
            "tumour_area_fraction": (above / assessed) if assessed else 0.0,
            "tumour_area_mm2": above * tile_mm2,
            "tissue_area_mm2": len(plan.tissue) * tile_mm2,
            "regions": region_count,
            "highest_region": None,
            "model_version": job.model_version,
            "threshold": job.threshold,
        }
