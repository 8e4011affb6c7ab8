"""App factory of the data service: `uvicorn --factory data_service.main:create_app`."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common.app import create_service_app, stop_tasks
from common.auth import jwks_token_verifier
from common.http import create_http_client
from common.service_tokens import ServiceTokenVerifier, load_public_key
from data_service.audit.routes import router as audit_router
from data_service.deps import GATEWAY_ISSUER, STORE_PREDICTIONS_AUDIENCE
from data_service.explanations.routes import router as explanations_router
from data_service.exports.routes import router as exports_router
from data_service.images import service as images
from data_service.images.routes import router as images_router
from data_service.images.storage import ImageStore
from data_service.patients.routes import router as patients_router
from data_service.predictions.routes import router as predictions_router
from data_service.reviews.routes import router as reviews_router
from data_service.settings import DataSettings, get_settings
from data_service.stats.routes import router as stats_router

logger = logging.getLogger("data_service")
ORPHAN_SWEEP_INTERVAL_S = 600.0


def create_app(settings: DataSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    store = ImageStore(settings.storage_dir.resolve())
    auth_client = create_http_client(settings.auth_url, read_timeout_s=5.0)

    async def sweep_orphans(app: FastAPI) -> None:
        while True:
            try:
                async with app.state.database.sessions() as session:
                    await images.purge_orphans(session, store, settings.orphan_grace_s)
            except Exception as exc:  # the database may be away; next round
                logger.warning("orphan sweep skipped: %s", type(exc).__name__)
            await asyncio.sleep(ORPHAN_SWEEP_INTERVAL_S)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(sweep_orphans(app))
        yield
        await stop_tasks(sweeper)
        await auth_client.aclose()

    app = create_service_app(
        service="data",
        title="Data service",
        description="Patients, images, predictions, clinician reviews, audit events, statistics.",
        settings=settings,
        database_url=settings.database_url,
        lifespan=lifespan,
    )

    async def storage_check() -> str | None:
        # File system calls block; keep them off the event loop.
        return await asyncio.to_thread(store.check_writable)

    app.state.readiness_checks["storage"] = storage_check
    app.state.image_store = store
    app.state.token_verifier = jwks_token_verifier(auth_client, settings)
    gateway_key = load_public_key(
        settings.gateway_service_public_key, settings.gateway_service_public_key_file
    )
    if gateway_key is None:
        logger.warning("no gateway service public key: storing predictions is refused")
    app.state.gateway_token_verifier = (
        ServiceTokenVerifier(gateway_key, GATEWAY_ISSUER, STORE_PREDICTIONS_AUDIENCE)
        if gateway_key
        else None
    )
    for router in (
        patients_router,
        images_router,
        predictions_router,
        reviews_router,
        explanations_router,
        stats_router,
        exports_router,
        audit_router,
    ):
        app.include_router(router)
    return app
