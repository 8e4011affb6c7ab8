"""App factory of the gateway: `uvicorn --factory gateway.main:create_app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from common.app import create_service_app
from common.auth import jwks_token_verifier
from common.service_tokens import ServiceTokenSigner, load_private_key
from gateway.analyses.routes import router as analyses_router
from gateway.analyses.routes import tiles_router as heatmap_tiles_router
from gateway.assistant.routes import router as assistant_router
from gateway.assistant.service import Assistant, provider_from_settings
from gateway.auth.routes import router as auth_router
from gateway.auth.sessions import AccountStatuses, SessionCheckingVerifier
from gateway.deps import limit_general, limit_slide_tiles
from gateway.insights.routes import router as insights_router
from gateway.models.routes import router as models_router
from gateway.patients.routes import router as patients_router
from gateway.plumbing.downstream import Downstreams
from gateway.plumbing.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from gateway.plumbing.ratelimit import RateLimits
from gateway.predictions.flow import SERVICE_ISSUER, PredictionFlow
from gateway.predictions.routes import router as predictions_router
from gateway.settings import GatewaySettings, get_settings
from gateway.slides.routes import router as slides_router
from gateway.slides.routes import tiles_router as slide_tiles_router
from gateway.slides.upload import SlideUploads

# Every public feature's routes, in the order the API docs list them.
FEATURE_ROUTERS = (
    auth_router,
    predictions_router,
    assistant_router,
    patients_router,
    slides_router,
    analyses_router,
    insights_router,
    models_router,
)

# Multipart framing and the form's small fields, on top of an upload's file.
MULTIPART_ALLOWANCE = 64 * 1024
# What a browser on an allowed origin may send and read.
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-None-Match",
    "X-Request-ID",
]
CORS_EXPOSED_HEADERS = [
    "X-Request-ID",
    "Retry-After",
    "Location",
    "Idempotent-Replayed",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "ETag",
]


def upload_limits(settings: GatewaySettings) -> dict[str, int]:
    """The body limit of each upload route: its file's limit and the multipart around it.
    A slide streams through (gateway.slides), so its limit costs no memory."""
    return {
        "/api/v1/predictions": settings.max_upload_bytes + MULTIPART_ALLOWANCE,
        "/api/v1/slides": settings.max_slide_bytes + MULTIPART_ALLOWANCE,
    }


def edge_middleware(settings: GatewaySettings) -> list[Middleware]:
    return [
        Middleware(SecurityHeadersMiddleware),
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list(),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            allow_credentials=False,  # bearer tokens, never cookies
            max_age=600,
        ),
        Middleware(
            BodyLimitMiddleware,
            default_limit=settings.max_body_bytes,
            upload_limits=upload_limits(settings),
        ),
    ]


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    state: dict[str, Downstreams | Assistant] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await state["assistant"].close()
        await state["downstreams"].close()

    app = create_service_app(
        service="gateway",
        title="Cancer Detection API",
        description=(
            "The public API of the breast histopathology assessment system. It assists "
            "clinicians and does not diagnose.\n\n"
            "Log in with `POST /api/v1/auth/token` and send the access token as "
            "`Authorization: Bearer ...`. Every error is "
            '`{"error": {"code", "message", "request_id"}}`; a downstream service that is '
            "down or slow gives 503 or 504 naming it."
        ),
        settings=settings,
        lifespan=lifespan,
        # Each downstream's own check takes up to this long; ours must wait a little longer.
        readiness_timeout_s=settings.readiness_timeout_s + 1.0,
        readiness_cache_s=settings.readiness_cache_s,
        # Our /ready is reachable from outside: it names each check and its status, and the
        # reasons (exception text, addresses, a downstream's own reason) go to the log only.
        # The services behind us keep the reason in their answer (they are not published),
        # so that it reaches the log line we write when one of them is down.
        readiness_public=True,
        middleware=edge_middleware(settings),
    )
    downstreams = state["downstreams"] = Downstreams(settings, app.state.metrics_registry)
    app.state.downstreams = downstreams
    rate_limits = app.state.rate_limits = RateLimits(settings, app.state.metrics_registry)
    service_key = load_private_key(
        settings.service_signing_key.get_secret_value() if settings.service_signing_key else None,
        settings.service_signing_key_file,
    )
    app.state.prediction_flow = PredictionFlow(
        downstreams,
        settings.predict_timeout_s,
        ServiceTokenSigner(service_key, SERVICE_ISSUER) if service_key else None,
    )
    app.state.slide_uploads = SlideUploads(
        downstreams, settings.slide_upload_timeout_s, settings.max_slide_bytes
    )
    app.state.assistant = state["assistant"] = Assistant(
        provider_from_settings(settings),
        downstreams,
        settings.assistant_max_input_tokens,
        settings.assistant_deadline_s,
        app.state.metrics_registry,
    )
    statuses = app.state.account_statuses = AccountStatuses(
        downstreams, settings.account_status_cache_s, settings.account_status_cache_size
    )
    app.state.token_verifier = SessionCheckingVerifier(
        jwks_token_verifier(downstreams.clients["auth"], settings), statuses
    )
    for router in FEATURE_ROUTERS:
        app.include_router(router, dependencies=[Depends(limit_general)])
    app.include_router(slide_tiles_router, dependencies=[Depends(limit_slide_tiles)])
    app.include_router(heatmap_tiles_router, dependencies=[Depends(limit_slide_tiles)])
    for name in downstreams.clients:
        app.state.readiness_checks[name] = downstreams.readiness_check(name)
    if settings.redis_url:
        app.state.readiness_checks["rate_limit_store"] = rate_limits.check
    return app
