"""Reviews of analyses: of a region and of the slide, the queue of analyses waiting for a
review, and the reviewed tiles as a training set. The review queue's path is registered
before `/analyses/{analysis_id}` (the app includes this router first)."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from common.db import SessionDep
from slide_service.deps import Admin, Reader, SettingsDep, Writer, page_limit
from slide_service.reviews import service
from slide_service.reviews.schemas import (
    AnalysisReviewsOut,
    RegionReviewEntry,
    RegionReviewIn,
    ReviewQueuePage,
    SlideReviewIn,
    SlideReviewOut,
)

router = APIRouter(tags=["slide reviews"])

NOT_SUCCEEDED: dict[int | str, dict[str, Any]] = {
    409: {"description": "The analysis has not succeeded: nothing to review"}
}


@router.get(
    "/analyses/review-queue",
    response_model=ReviewQueuePage,
    summary="Succeeded analyses nobody has given a slide review yet, the longest waiting first",
)
async def review_queue(
    _: Reader,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ReviewQueuePage:
    return await service.review_queue(session, page_limit(limit, settings.max_page_size), offset)


@router.post(
    "/analyses/{analysis_id}/regions/{region_id}/review",
    status_code=201,
    response_model=RegionReviewEntry,
    summary="A verdict on a region: agree (malignant), correct its label, or dismiss it",
    responses=NOT_SUCCEEDED,
)
async def review_region(
    analysis_id: uuid.UUID,
    region_id: uuid.UUID,
    body: RegionReviewIn,
    who: Writer,
    session: SessionDep,
) -> RegionReviewEntry:
    return await service.review_region(
        session, analysis_id, region_id, uuid.UUID(who.subject), body
    )


@router.post(
    "/analyses/{analysis_id}/review",
    status_code=201,
    response_model=SlideReviewOut,
    summary="A verdict on the whole slide, given this analysis",
    responses=NOT_SUCCEEDED,
)
async def review_slide(
    analysis_id: uuid.UUID, body: SlideReviewIn, who: Writer, session: SessionDep
) -> SlideReviewOut:
    return await service.review_slide(session, analysis_id, uuid.UUID(who.subject), body)


@router.get(
    "/analyses/{analysis_id}/reviews",
    response_model=AnalysisReviewsOut,
    summary="The slide reviews and region reviews of an analysis, newest first",
)
async def list_reviews(
    analysis_id: uuid.UUID, _: Reader, session: SessionDep
) -> AnalysisReviewsOut:
    return await service.reviews(session, analysis_id)


@router.get(
    "/exports/region-tiles.zip",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
    summary="Reviewed regions' top tiles as a training set, benign/ and malignant/ (admin)",
    description=(
        "The `folders` layout of `ml.datasets`; file names `<slide>_<region>_<tile>.png` keep a "
        "slide's tiles in one group. agree = malignant, correct = the corrected label, dismissed "
        "regions are left out; a region's newest review decides. Built in memory: refused "
        "(409 `export_too_large`) past 256 MiB of tiles."
    ),
)
async def export_region_tiles(_: Admin, session: SessionDep) -> Response:
    return Response(
        await service.region_tiles_zip(session),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="region-tiles.zip"'},
    )
