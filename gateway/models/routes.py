"""`/api/v1/models`: the inference service's registry of model versions."""

from typing import Annotated

from fastapi import APIRouter, Path, Response

from gateway.deps import Admin, ProxyDep, Reader
from gateway.models.schemas import ModelVersion, ModelVersionDetail
from gateway.plumbing.errors import error_responses

router = APIRouter(prefix="/api/v1/models", tags=["models"])
Version = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
# Names as `ModelVersionDetail.figures` lists them; no dot segments, so nothing outside.
Figure = Annotated[str, Path(max_length=200, pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*\.png$")]
READ_ERRORS = error_responses(401, 422, 429, 503, 504)


@router.get(
    "",
    response_model=list[ModelVersion],
    summary="Registered model versions with their test metrics",
    responses=READ_ERRORS,
)
async def list_versions(proxy: ProxyDep, _: Reader) -> Response:
    return await proxy.forward("inference", "/models", idempotent=True)


@router.get(
    "/{version}",
    response_model=ModelVersionDetail,
    summary="One version: its card, with the reports of its training run",
    responses={**READ_ERRORS, **error_responses(404)},
)
async def get_version(proxy: ProxyDep, version: Version, _: Reader) -> Response:
    return await proxy.forward("inference", f"/models/{version}", idempotent=True)


@router.get(
    "/{version}/figures/{figure:path}",
    response_class=Response,
    summary="One PNG figure of the version's training reports (sample grid, ROC, ...)",
    responses={
        200: {"content": {"image/png": {}}, "description": "The figure"},
        **READ_ERRORS,
        **error_responses(404),
    },
)
async def get_figure(proxy: ProxyDep, version: Version, figure: Figure, _: Reader) -> Response:
    return await proxy.forward("inference", f"/models/{version}/figures/{figure}", idempotent=True)


@router.post(
    "/{version}/activate",
    response_model=ModelVersion,
    summary="Serve this version from now on (admin); every replica switches within seconds",
    responses=error_responses(
        401, 403, 404, 422, 429, 503, 504, s422="The version's files changed since registration"
    ),
)
async def activate(proxy: ProxyDep, version: Version, _: Admin) -> Response:
    # Activating the active version again changes nothing: safe to repeat.
    return await proxy.forward("inference", f"/models/{version}/activate", idempotent=True)
