"""Typed dependencies, so a route's signature states its contract: who may call it, what it
takes from the app (built once by `main.create_app` and kept on `app.state`), and which
rate limit it counts against."""

from typing import Annotated

from fastapi import Depends, Request

from common.auth import CurrentPrincipal, Principal, require_roles
from gateway.assistant.service import Assistant
from gateway.plumbing.downstream import Downstreams
from gateway.plumbing.proxy import Proxy
from gateway.plumbing.ratelimit import RateLimits, client_address, remember
from gateway.predictions.flow import PredictionFlow
from gateway.settings import GatewaySettings

# -- who may call -----------------------------------------------------------------------------

Reader = CurrentPrincipal  # any signed-in role, viewers included (the token names only these)
Writer = Annotated[Principal, Depends(require_roles("admin", "clinician"))]
Admin = Annotated[Principal, Depends(require_roles("admin"))]

# -- what the app holds -----------------------------------------------------------------------


def _settings(request: Request) -> GatewaySettings:
    return request.app.state.settings


def _downstreams(request: Request) -> Downstreams:
    return request.app.state.downstreams


def _prediction_flow(request: Request) -> PredictionFlow:
    return request.app.state.prediction_flow


def _assistant(request: Request) -> Assistant:
    return request.app.state.assistant


def _rate_limits(request: Request) -> RateLimits:
    return request.app.state.rate_limits


SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
DownstreamsDep = Annotated[Downstreams, Depends(_downstreams)]
PredictionFlowDep = Annotated[PredictionFlow, Depends(_prediction_flow)]
AssistantDep = Annotated[Assistant, Depends(_assistant)]
RateLimitsDep = Annotated[RateLimits, Depends(_rate_limits)]


def _proxy(request: Request, downstreams: DownstreamsDep) -> Proxy:
    return Proxy(request, downstreams)


# For the routes that pass the request on as it is.
ProxyDep = Annotated[Proxy, Depends(_proxy)]

# -- rate limits ------------------------------------------------------------------------------


async def limit_general(request: Request, rate_limits: RateLimitsDep) -> None:
    """Every `/api/v1` route, per client address."""
    remember(request, await rate_limits.hit("general", client_address(request)))


async def limit_login(request: Request, rate_limits: RateLimitsDep) -> None:
    remember(request, await rate_limits.hit("login", client_address(request)))


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
