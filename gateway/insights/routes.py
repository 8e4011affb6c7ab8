"""`/api/v1/stats` and `/api/v1/exports/labels`: what the stored predictions add up to."""

from datetime import datetime

from fastapi import APIRouter, Response

from gateway.deps import Admin, ProxyDep, Reader
from gateway.insights.schemas import Stats
from gateway.plumbing.errors import error_responses

router = APIRouter(prefix="/api/v1")


@router.get(
    "/stats",
    tags=["stats"],
    response_model=Stats,
    summary="Counts by label, day and model version; review agreement; mean model latency",
    responses=error_responses(401, 422, 429, 503, 504),
)
async def stats(
    proxy: ProxyDep,
    _: Reader,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> Response:
    return await proxy.forward("data", "/stats", idempotent=True)


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
async def export_labels(proxy: ProxyDep, _: Admin) -> Response:
    return await proxy.forward("data", "/exports/labels", idempotent=True)
