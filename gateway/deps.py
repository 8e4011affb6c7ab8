"""Typed dependencies, so a route's signature states its contract: who may call it, what it
takes from the app (built once by `main.create_app` and kept on `app.state`), and which
rate limit it counts against."""

from typing import Annotated

from fastapi import Depends, Request

from common.auth import Admin as Admin
from common.auth import Principal
from common.auth import Reader as Reader
from common.auth import Writer as Writer
from common.deps import app_state
from gateway.assistant.service import Assistant
from gateway.plumbing.downstream import Downstreams
from gateway.plumbing.proxy import Proxy
from gateway.plumbing.ratelimit import RateLimits, client_address, remember
from gateway.predictions.flow import PredictionFlow
from gateway.settings import GatewaySettings
from gateway.slides.upload import SlideUploads

# Who may call: Reader, Writer and Admin, the same three rules in every service (common.auth).

# -- what the app holds -----------------------------------------------------------------------

SettingsDep = Annotated[GatewaySettings, Depends(app_state("settings"))]
DownstreamsDep = Annotated[Downstreams, Depends(app_state("downstreams"))]
PredictionFlowDep = Annotated[PredictionFlow, Depends(app_state("prediction_flow"))]
AssistantDep = Annotated[Assistant, Depends(app_state("assistant"))]
RateLimitsDep = Annotated[RateLimits, Depends(app_state("rate_limits"))]
SlideUploadsDep = Annotated[SlideUploads, Depends(app_state("slide_uploads"))]


async def _proxy(request: Request, downstreams: DownstreamsDep) -> Proxy:
    return Proxy(request, downstreams)


# For the routes that pass the request on as it is.
ProxyDep = Annotated[Proxy, Depends(_proxy)]

# -- rate limits ------------------------------------------------------------------------------


async def limit_general(request: Request, rate_limits: RateLimitsDep) -> None:
    """Every `/api/v1` route, per client address."""
    remember(request, await rate_limits.hit("general", client_address(request)))


async def limit_login(request: Request, rate_limits: RateLimitsDep) -> None:
    remember(request, await rate_limits.hit("login", client_address(request)))


async def limit_slide_tiles(request: Request, rate_limits: RateLimitsDep) -> None:
    """Deep-zoom tiles, per client address, instead of the general limit."""
    remember(request, await rate_limits.hit("slide_tiles", client_address(request)))


def per_user_limit(name: str):
    """A dependency: a clinician or admin, within their quota of limit `name` (checked in
    that order: 401, 403, then 429)."""

    async def within_quota(
        request: Request, principal: Writer, rate_limits: RateLimitsDep
    ) -> Principal:
        remember(request, await rate_limits.hit(name, principal.subject))
        return principal

    return within_quota


PredictionQuota = Annotated[Principal, Depends(per_user_limit("predictions"))]
AssistantQuota = Annotated[Principal, Depends(per_user_limit("assistant"))]
