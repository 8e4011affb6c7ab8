"""`/api/v1/stats` and `/api/v1/exports/labels`: what the stored predictions add up to."""

from datetime import datetime

from fastapi import APIRouter, Request, Response

from gateway.deps import Admin, Reader
from gateway.insights.schemas import Stats
from gateway.plumbing.errors import error_responses
from gateway.plumbing.proxy import forward

router = APIRouter(prefix="/api/v1")


@router.get(
    "/stats",
    tags=["stats"],
    response_model=Stats,
    summary="Counts by label, day and model version; review agreement; mean model latency",
    responses=error_responses(401, 422, 429, 503, 504),
)
async def stats(
    request: Request,
    _: Reader,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> Response:
    return await forward(request, "data", "/stats", idempotent=True)


@router.get(
    "/exports/labels",
    tags=["exports"],
    response_class=Response,
    summary="Reviewed labels as CSV, for retraining (admin)",
    responses={
        200: {"content": {"text/csv": {}}, "description": "One row per reviewed prediction"},
        **error_responses(401, 403, 429, 503, 504),
    },
)
async def export_labels(request: Request, _: Admin) -> Response:
    return await forward(request, "data", "/exports/labels", idempotent=True)
