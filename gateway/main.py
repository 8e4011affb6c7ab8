"""App factory of the gateway: `uvicorn --factory gateway.main:create_app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common.app import create_service_app
from common.auth import jwks_token_verifier
from gateway.downstream import Downstreams
from gateway.routes import auth as auth_routes
from gateway.settings import GatewaySettings, get_settings


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    downstreams = Downstreams(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await downstreams.close()

    app = create_service_app(
        service="gateway",
        title="Cancer Detection API",
        description=(
            "The public API of the breast histopathology assessment system. "
            "It assists clinicians and does not diagnose."
        ),
        settings=settings,
        lifespan=lifespan,
        # Each downstream's own check takes up to this long; ours must wait a little longer.
        readiness_timeout_s=settings.readiness_timeout_s + 1.0,
    )
    app.state.downstreams = downstreams
    app.state.token_verifier = jwks_token_verifier(downstreams.clients["auth"], settings)
    app.include_router(auth_routes.router)
    for name in downstreams.clients:
        app.state.readiness_checks[name] = downstreams.readiness_check(name)
    return app
