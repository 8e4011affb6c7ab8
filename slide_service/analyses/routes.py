import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from common.db import SessionDep
from slide_service.analyses import results, service
from slide_service.analyses.inference import active_model
from slide_service.analyses.schemas import AnalysisOut, AnalysisStatsOut, RegionOut
from slide_service.deps import (
    AnalysisViewer,
    HeatmapCacheDep,
    InferenceClientDep,
    QueueAppDep,
    Reader,
    SettingsDep,
    Writer,
)
from slide_service.slides import service as slides

router = APIRouter(tags=["slide analyses"])

PNG = {200: {"content": {"image/png": {}}}}
GEOJSON = {200: {"content": {"application/geo+json": {}}}}
# A finished analysis's images never change.
CACHE_CONTROL = "private, max-age=86400, immutable"


def _bearer(request: Request) -> str:
    return request.headers.get("authorization", "").partition(" ")[2]


@router.post(
    "/slides/{slide_id}/analyses",
    status_code=202,
    response_model=AnalysisOut,
    summary="Start an analysis of the slide: a job on the queue, run by a worker",
    responses={
        409: {"description": "The slide is being analysed already"},
        422: {"description": "The slide's resolution is unknown"},
        429: {"description": "Too many analyses of this user waiting or running"},
        503: {"description": "No active model, no model scale, or the queue is away"},
    },
)
async def start_analysis(
    request: Request,
    response: Response,
    slide_id: uuid.UUID,
    who: Writer,
    session: SessionDep,
    settings: SettingsDep,
    queue_app: QueueAppDep,
    inference: InferenceClientDep,
) -> AnalysisOut:
    slide = await slides.get(session, slide_id)
    if slide.microns_per_pixel_x is None:
        raise service.unknown_resolution()
    model = await active_model(inference, _bearer(request))
    analysis = await service.start(
        session,
        queue_app,
        slide,
        model,
        uuid.UUID(who.subject),
        settings.analysis_max_active_per_user,
    )
    response.headers["Location"] = f"/api/v1/analyses/{analysis.id}"
    return service.to_out(analysis)


@router.get(
    "/slides/{slide_id}/analyses",
    response_model=list[AnalysisOut],
    summary="The slide's analyses, newest first",
)
async def list_analyses(slide_id: uuid.UUID, _: Reader, session: SessionDep) -> list[AnalysisOut]:
    await slides.get(session, slide_id)
    return [service.to_out(a) for a in await service.list_for_slide(session, slide_id)]


@router.get("/analyses/stats", response_model=AnalysisStatsOut, summary="Analyses in numbers")
async def analysis_stats(_: Reader, session: SessionDep) -> AnalysisStatsOut:
    return await service.stats(session)


@router.get(
    "/analyses/{analysis_id}",
    response_model=AnalysisOut,
    summary="Status, progress (tiles done of total, tiles/s, ETA) and, once done, the summary",
)
async def get_analysis(analysis_id: uuid.UUID, _: Reader, session: SessionDep) -> AnalysisOut:
    return service.to_out(await service.get(session, analysis_id))


@router.post(
    "/analyses/{analysis_id}/cancel",
    response_model=AnalysisOut,
    summary="Cancel a waiting or running analysis",
)
async def cancel_analysis(
    analysis_id: uuid.UUID,
    who: Writer,
    session: SessionDep,
    queue_app: QueueAppDep,
) -> AnalysisOut:
    analysis = await service.cancel(session, queue_app, analysis_id, uuid.UUID(who.subject))
    return service.to_out(analysis)


@router.get(
    "/analyses/{analysis_id}/regions",
    response_model=list[RegionOut],
    summary="Suspicious regions, highest peak first, with their top tiles and newest review",
)
async def list_regions(analysis_id: uuid.UUID, _: Reader, session: SessionDep) -> list[RegionOut]:
    return await service.regions(session, analysis_id)


@router.get(
    "/analyses/{analysis_id}/regions.geojson",
    response_class=Response,
    responses=GEOJSON,
    summary="The regions as a GeoJSON FeatureCollection that QuPath imports as annotations",
)
async def regions_geojson(analysis_id: uuid.UUID, _: Reader, session: SessionDep) -> Response:
    found = await service.regions(session, analysis_id)
    collection = results.regions_feature_collection([r.model_dump() for r in found])
    return Response(
        collection.model_dump_json(exclude_none=True),
        media_type="application/geo+json",
        headers={"Content-Disposition": f'attachment; filename="regions-{analysis_id}.geojson"'},
    )


@router.get(
    "/analyses/{analysis_id}/regions/{region_id}/tiles/{rank}.png",
    response_class=Response,
    responses=PNG,
    summary="One of a region's top tiles, alone or with its Grad-CAM overlay",
)
async def region_tile(
    analysis_id: uuid.UUID,
    region_id: uuid.UUID,
    rank: Annotated[int, Path(ge=1, le=100)],
    _: Reader,
    session: SessionDep,
    overlay: Annotated[str, Query(pattern="^(gradcam|none)$")] = "gradcam",
) -> Response:
    tile = await service.region_tile(session, analysis_id, region_id, rank)
    data = tile.gradcam_png if overlay == "gradcam" and tile.gradcam_png else tile.image_png
    return Response(data, media_type="image/png", headers={"Cache-Control": CACHE_CONTROL})


@router.get(
    "/analyses/{analysis_id}/mask.png",
    response_class=Response,
    responses=PNG,
    summary="The tissue mask the tiles were chosen by (bearer token or ?grant=)",
)
async def tissue_mask(analysis_id: uuid.UUID, _: AnalysisViewer, session: SessionDep) -> Response:
    return Response(
        await service.mask_png(session, analysis_id),
        media_type="image/png",
        headers={"Cache-Control": CACHE_CONTROL},
    )


@router.get(
    "/analyses/{analysis_id}/heatmap.dzi",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}}},
    summary="The heatmap's Deep Zoom descriptor, aligned with the slide (bearer or ?grant=)",
)
async def heatmap_dzi(
    analysis_id: uuid.UUID, _: AnalysisViewer, session: SessionDep, cache: HeatmapCacheDep
) -> Response:
    image = await cache.get(session, analysis_id)
    return Response(
        image.dzi(), media_type="application/xml", headers={"Cache-Control": CACHE_CONTROL}
    )


@router.get(
    "/analyses/{analysis_id}/heatmap_files/{level}/{col}_{row}.png",
    response_class=Response,
    responses=PNG,
    summary="One Deep Zoom tile of the heatmap (bearer token or ?grant=)",
)
async def heatmap_tile(
    analysis_id: uuid.UUID,
    level: Annotated[int, Path(ge=0, le=64)],
    col: Annotated[int, Path(ge=0)],
    row: Annotated[int, Path(ge=0)],
    _: AnalysisViewer,
    session: SessionDep,
    cache: HeatmapCacheDep,
) -> Response:
    image = await cache.get(session, analysis_id)
    data = await asyncio.to_thread(image.tile, level, col, row)
    if data is None:
        raise service.ServiceError(
            404, "The heatmap has no tile at that level and address.", code="tile_not_found"
        )
    return Response(data, media_type="image/png", headers={"Cache-Control": CACHE_CONTROL})
