"""The skeleton every service's app factory starts from."""

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.middleware import Middleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from common import health
from common.errors import install_error_handlers
from common.logging import configure_logging
from common.metrics import install_metrics
from common.middleware import install_request_middleware
from common.settings import ServiceSettings

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

VERSION = "0.1.0"

# FastAPI's own OpenTelemetry layer (since 0.165, on by default) looks for configured
# providers on every request, and once one is configured (a library may set a global one)
# it wraps each request, dependency and serialisation in spans. The services report through
# Prometheus metrics and JSON logs with request ids instead.
NO_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def create_service_app(
    *,
    service: str,
    title: str,
    settings: ServiceSettings,
    database_url: str | None = None,
    lifespan: Lifespan | None = None,
    description: str = "",
    readiness_timeout_s: float = 3.0,
    readiness_cache_s: float = 0.0,
    readiness_public: bool = False,
    middleware: Sequence[Middleware] = (),
) -> FastAPI:
    """A FastAPI app with logging, request ids, the error envelope, metrics, health and ready.

    With `database_url` the app owns a `Database` (`app.state.database`), checked by `/ready`
    and disposed at shutdown. The service adds its routers and further readiness checks
    (`app.state.readiness_checks[name]`), and its own `lifespan` for anything else it runs.
    `/ready` shares one run of the checks among concurrent callers and reuses its result for
    `readiness_cache_s`; a `readiness_public` service answers without the reasons (see
    `common.health`).

    `middleware` (outermost first) runs inside the request-id and access-log layers, so
    what it answers by itself is logged and carries the request id.
    """
    configure_logging(service, settings.log_level)
    database = None
    if database_url:
        # The gateway has no database and no SQLAlchemy installed.
        from common.db import Database, install_db_error_handlers

        database = Database(database_url)

    @asynccontextmanager
    async def service_lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            if database is not None:
                await database.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version=VERSION,
        lifespan=service_lifespan,
        telemetry=NO_TELEMETRY,
    )
    app.state.service_name = service
    app.state.settings = settings
    app.state.database = database
    app.state.readiness_checks = {"database": database.check} if database else {}
    app.state.readiness_timeout_s = readiness_timeout_s
    app.state.readiness_cache = health.ReadinessCache(readiness_cache_s)
    app.state.readiness_public = readiness_public
    install_error_handlers(app)
    if database is not None:
        install_db_error_handlers(app)
    install_metrics(app, service, VERSION)
    app.include_router(health.router)
    for layer in reversed(middleware):
        app.add_middleware(layer.cls, *layer.args, **layer.kwargs)
    install_request_middleware(app)
    # Outermost, so every later layer (logs, throttling) sees the real client address.
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    return app


async def stop_tasks(*tasks: asyncio.Task) -> None:
    """Cancel a service's background tasks at shutdown and wait until each has stopped."""
    for task in tasks:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
