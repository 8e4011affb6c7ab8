"""`/api/v1/...analyses`: start a slide analysis (a job on the slide service's queue), follow
it, cancel it, read its regions, images and heatmap, review it, and export the reviewed tiles.

Each route maps one to one onto the slide service, which checks the caller again and answers
in the same envelope. The tissue mask and the heatmap's Deep Zoom descriptor and tiles take a
view grant of the analysed slide (`?grant=`) instead of a bearer token, like the slide's own;
heatmap tiles count against the tiles' rate limit (`tiles_router`), not the general one.
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from gateway.analyses.schemas import (
    Analysis,
    AnalysisReviews,
    AnalysisStats,
    Region,
    RegionReviewEntry,
    RegionReviewIn,
    ReviewQueuePage,
    SlideReview,
    SlideReviewIn,
)
from gateway.deps import Admin, DownstreamsDep, ProxyDep, Reader, Writer
from gateway.plumbing.errors import error_responses
from gateway.plumbing.proxy import caller_headers, relay
from gateway.slides.routes import Grant, reader_or_grant

PREFIX = "/api/v1"
router = APIRouter(prefix=PREFIX, tags=["slide analyses"])
tiles_router = APIRouter(prefix=PREFIX, tags=["slide analyses"])

READ_ERRORS = error_responses(401, 422, 429, 503, 504)
ONE_ANALYSIS = {**READ_ERRORS, **error_responses(404, s404="No such analysis")}
WRITE_ERRORS = {**ONE_ANALYSIS, **error_responses(403)}
RESULTS = {
    **ONE_ANALYSIS,
    **error_responses(409, s409="The analysis has not succeeded: no results yet"),
}
REVIEW_ERRORS = {
    **WRITE_ERRORS,
    **error_responses(
        404, 409, s404="No such analysis or region", s409="The analysis has not succeeded"
    ),
}
GRANT_ERRORS = {**RESULTS, **error_responses(403, s403="The grant is for another slide")}
CACHED = {"description": "The image", "headers": {"Cache-Control": {"schema": {"type": "string"}}}}
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}, **CACHED}}
# The export is built by the slide service in memory (up to 256 MiB): it may take a while.
EXPORT_TIMEOUT_S = 300.0


@router.post(
    "/slides/{slide_id}/analyses",
    status_code=202,
    response_model=Analysis,
    summary="Start an analysis of a slide: a job on a queue, run by a worker",
    description=(
        "Answers at once with the queued analysis and `Location: /api/v1/analyses/{id}`; "
        "follow its progress there."
    ),
    responses={
        202: {"headers": {"Location": {"schema": {"type": "string"}}}},
        **READ_ERRORS,
        **error_responses(
            403,
            404,
            409,
            s404="No such slide",
            s409="The slide is being analysed already",
            s422="The slide's resolution is unknown",
        ),
        429: {
            "model": error_responses(429)[429]["model"],
            "description": "Over a rate limit, or too many analyses of yours waiting or running",
        },
    },
)
async def start_analysis(proxy: ProxyDep, slide_id: uuid.UUID, _: Writer) -> Response:
    return await proxy.forward("slides", f"/slides/{slide_id}/analyses", idempotent=False)


@router.get(
    "/slides/{slide_id}/analyses",
    response_model=list[Analysis],
    summary="A slide's analyses, newest first",
    responses={**READ_ERRORS, **error_responses(404, s404="No such slide")},
)
async def list_analyses(proxy: ProxyDep, slide_id: uuid.UUID, _: Reader) -> Response:
    return await proxy.forward("slides", f"/slides/{slide_id}/analyses", idempotent=True)


@router.get(
    "/analyses/stats",
    response_model=AnalysisStats,
    summary="Analyses in numbers",
    responses=READ_ERRORS,
)
async def analysis_stats(proxy: ProxyDep, _: Reader) -> Response:
    return await proxy.forward("slides", "/analyses/stats", idempotent=True)


@router.get(
    "/analyses/review-queue",
    response_model=ReviewQueuePage,
    summary="Succeeded analyses without a slide review, the longest waiting first",
    responses=READ_ERRORS,
)
async def review_queue(
    proxy: ProxyDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    return await proxy.forward("slides", "/analyses/review-queue", idempotent=True)


@router.get(
    "/analyses/{analysis_id}",
    response_model=Analysis,
    summary="An analysis: status, progress (tiles done, tiles/s, ETA) and, once done, summary",
    responses=ONE_ANALYSIS,
)
async def get_analysis(proxy: ProxyDep, analysis_id: uuid.UUID, _: Reader) -> Response:
    return await proxy.forward("slides", f"/analyses/{analysis_id}", idempotent=True)


@router.post(
    "/analyses/{analysis_id}/cancel",
    response_model=Analysis,
    summary="Cancel a waiting or running analysis",
    responses={**WRITE_ERRORS, **error_responses(409, s409="Finished already")},
)
async def cancel_analysis(proxy: ProxyDep, analysis_id: uuid.UUID, _: Writer) -> Response:
    return await proxy.forward("slides", f"/analyses/{analysis_id}/cancel", idempotent=False)


@router.get(
    "/analyses/{analysis_id}/regions",
    response_model=list[Region],
    summary="Suspicious regions, highest peak first, with their top tiles and newest review",
    responses=RESULTS,
)
async def list_regions(proxy: ProxyDep, analysis_id: uuid.UUID, _: Reader) -> Response:
    return await proxy.forward("slides", f"/analyses/{analysis_id}/regions", idempotent=True)


@router.get(
    "/analyses/{analysis_id}/regions.geojson",
    response_class=Response,
    summary="The regions as a GeoJSON FeatureCollection (QuPath annotations, level-0 px)",
    responses={
        200: {
            "content": {"application/geo+json": {}},
            "description": "A download (`Content-Disposition: attachment`)",
        },
        **RESULTS,
    },
)
async def regions_geojson(proxy: ProxyDep, analysis_id: uuid.UUID, _: Reader) -> Response:
    return await proxy.forward(
        "slides", f"/analyses/{analysis_id}/regions.geojson", idempotent=True
    )


@router.get(
    "/analyses/{analysis_id}/regions/{region_id}/tiles/{rank}.png",
    response_class=Response,
    summary="One of a region's top tiles, alone or with its Grad-CAM overlay",
    responses={**PNG, **RESULTS, **error_responses(404, s404="No such analysis, region or tile")},
)
async def region_tile(
    proxy: ProxyDep,
    analysis_id: uuid.UUID,
    region_id: uuid.UUID,
    rank: Annotated[int, Path(ge=1, le=100)],
    _: Reader,
    overlay: Annotated[str, Query(pattern="^(gradcam|none)$")] = "gradcam",
) -> Response:
    return await proxy.forward(
        "slides", f"/analyses/{analysis_id}/regions/{region_id}/tiles/{rank}.png", idempotent=True
    )


@router.get(
    "/analyses/{analysis_id}/mask.png",
    response_class=Response,
    summary="The tissue mask the tiles were chosen by (bearer token or ?grant=)",
    responses={
        **PNG,
        **GRANT_ERRORS,
        **error_responses(409, s409="The analysis has not started: no mask yet"),
    },
    dependencies=[Depends(reader_or_grant)],
)
async def tissue_mask(proxy: ProxyDep, analysis_id: uuid.UUID, grant: Grant = None) -> Response:
    return await proxy.forward("slides", f"/analyses/{analysis_id}/mask.png", idempotent=True)


@router.get(
    "/analyses/{analysis_id}/heatmap.dzi",
    response_class=Response,
    summary="The heatmap's Deep Zoom descriptor, aligned with the slide (bearer or ?grant=)",
    responses={200: {"content": {"application/xml": {}}, **CACHED}, **GRANT_ERRORS},
    dependencies=[Depends(reader_or_grant)],
)
async def heatmap_dzi(proxy: ProxyDep, analysis_id: uuid.UUID, grant: Grant = None) -> Response:
    return await proxy.forward("slides", f"/analyses/{analysis_id}/heatmap.dzi", idempotent=True)


@tiles_router.get(
    "/analyses/{analysis_id}/heatmap_files/{level}/{col}_{row}.png",
    response_class=Response,
    summary="One Deep Zoom tile of the heatmap (bearer token or ?grant=)",
    responses={
        **PNG,
        **GRANT_ERRORS,
        **error_responses(404, s404="No such analysis or tile"),
    },
    dependencies=[Depends(reader_or_grant)],
)
async def heatmap_tile(
    proxy: ProxyDep,
    analysis_id: uuid.UUID,
    level: Annotated[int, Path(ge=0, le=64)],
    col: Annotated[int, Path(ge=0, le=1_000_000)],
    row: Annotated[int, Path(ge=0, le=1_000_000)],
    grant: Grant = None,
) -> Response:
    return await proxy.forward(
        "slides",
        f"/analyses/{analysis_id}/heatmap_files/{level}/{col}_{row}.png",
        idempotent=True,
    )


@router.post(
    "/analyses/{analysis_id}/regions/{region_id}/review",
    status_code=201,
    response_model=RegionReviewEntry,
    summary="A verdict on a region: agree (malignant), correct its label, or dismiss it",
    responses=REVIEW_ERRORS,
)
async def review_region(
    proxy: ProxyDep,
    analysis_id: uuid.UUID,
    region_id: uuid.UUID,
    body: RegionReviewIn,
    _: Writer,
) -> Response:
    return await proxy.forward(
        "slides", f"/analyses/{analysis_id}/regions/{region_id}/review", idempotent=False
    )


@router.post(
    "/analyses/{analysis_id}/review",
    status_code=201,
    response_model=SlideReview,
    summary="A verdict on the whole slide, given this analysis",
    responses=REVIEW_ERRORS,
)
async def review_slide(
    proxy: ProxyDep, analysis_id: uuid.UUID, body: SlideReviewIn, _: Writer
) -> Response:
    return await proxy.forward("slides", f"/analyses/{analysis_id}/review", idempotent=False)


@router.get(
    "/analyses/{analysis_id}/reviews",
    response_model=AnalysisReviews,
    summary="The slide reviews and region reviews of an analysis, newest first",
    responses=ONE_ANALYSIS,
)
async def list_reviews(proxy: ProxyDep, analysis_id: uuid.UUID, _: Reader) -> Response:
    return await proxy.forward("slides", f"/analyses/{analysis_id}/reviews", idempotent=True)


@router.get(
    "/exports/region-tiles.zip",
    response_class=Response,
    summary="Reviewed regions' top tiles as a training set, benign/ and malignant/ (admin)",
    description=(
        "The `folders` layout `ml/` trains from; file names `<slide>_<region>_<tile>.png` keep "
        "a slide's tiles in one group. agree = malignant, correct = the corrected label, "
        "dismissed regions are left out; a region's newest review decides."
    ),
    responses={
        200: {"content": {"application/zip": {}}, "description": "A zip download"},
        **READ_ERRORS,
        **error_responses(403, 409, s409="More tiles than one export holds"),
    },
)
async def export_region_tiles(request: Request, downstreams: DownstreamsDep, _: Admin) -> Response:
    answer = await downstreams.call(
        "slides",
        "GET",
        "/exports/region-tiles.zip",
        idempotent=True,
        timeout_s=EXPORT_TIMEOUT_S,
        headers=caller_headers(request),
    )
    return relay(answer)
