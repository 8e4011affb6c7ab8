"""Typed dependencies, so routes read like their contract: who may do what (clinicians and
admins upload, every role reads, only admins delete, read associated images or the audit
trail; dzi and tiles also take a view grant instead of a bearer token) and what the app
factory set up for them."""

import uuid
from typing import Annotated

import httpx
import procrastinate
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

# Who may call: the same three rules in every service.
from common.auth import Admin as Admin
from common.auth import Reader as Reader
from common.auth import TokenVerifier
from common.auth import Writer as Writer
from common.deps import app_state
from common.deps import page_limit as page_limit
from common.errors import ServiceError
from slide_service.analyses.models import Analysis
from slide_service.analyses.service import HeatmapCache
from slide_service.settings import SlideSettings
from slide_service.slides.storage import SlideStore
from slide_service.tiles.deepzoom import SlideRefs, TileServer
from slide_service.view_links.grants import ViewGrants

SettingsDep = Annotated[SlideSettings, Depends(app_state("settings"))]
SlideStoreDep = Annotated[SlideStore, Depends(app_state("slide_store"))]
TileServerDep = Annotated[TileServer, Depends(app_state("tile_server"))]
SlideRefsDep = Annotated[SlideRefs, Depends(app_state("slide_refs"))]
ViewGrantsDep = Annotated[ViewGrants, Depends(app_state("view_grants"))]
HeatmapCacheDep = Annotated[HeatmapCache, Depends(app_state("heatmap_cache"))]
# The procrastinate app (defers and cancels analysis jobs) and the inference service's client.
QueueAppDep = Annotated[procrastinate.App, Depends(app_state("queue_app"))]
InferenceClientDep = Annotated[httpx.AsyncClient, Depends(app_state("inference_client"))]

_bearer = HTTPBearer(auto_error=False, description="An access token, or use ?grant=")


async def _viewer(
    request: Request,
    slide_id: uuid.UUID,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    grant: Annotated[str | None, Query(max_length=4096)] = None,
) -> str:
    """The caller's subject: from a view grant for this slide, else from a bearer token of
    any role."""
    if grant is not None:
        grants: ViewGrants = request.app.state.view_grants
        return str(grants.check(grant, slide_id)["sub"])
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ServiceError(
            401,
            "Reading a slide's tiles needs a bearer token or a view link (?grant=).",
            code="missing_token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    verifier: TokenVerifier = request.app.state.token_verifier
    return (await verifier.verify(credentials.credentials)).subject


SlideViewer = Annotated[str, Depends(_viewer)]


async def _analysis_viewer(
    request: Request,
    analysis_id: uuid.UUID,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    grant: Annotated[str | None, Query(max_length=4096)] = None,
) -> str:
    """As `SlideViewer`, for an analysis's images: a view grant of the analysed slide works."""
    slide_id = None
    if grant is not None:
        async with request.app.state.database.sessions() as session:
            analysis = await session.get(Analysis, analysis_id)
        if analysis is None:
            raise ServiceError(404, "No such analysis.", code="analysis_not_found")
        slide_id = analysis.slide_id
    return await _viewer(request, slide_id or analysis_id, credentials, grant)


AnalysisViewer = Annotated[str, Depends(_analysis_viewer)]
