"""App factory of the inference service: `uvicorn --factory inference_service.main:create_app`."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common.app import create_service_app, stop_tasks
from common.auth import jwks_token_verifier
from common.http import create_http_client
from common.service_tokens import ServiceTokenVerifier, load_public_key
from inference_service.deps import SLIDE_WORKER_AUDIENCE, SLIDE_WORKER_ISSUER
from inference_service.registry import service as registry
from inference_service.registry.routes import router as registry_router
from inference_service.serving.batcher import Batcher, BatchMetrics
from inference_service.serving.holder import ModelHolder
from inference_service.serving.memory import MemoryBudget, return_freed_images_to_the_system
from inference_service.serving.routes import router as serving_router
from inference_service.serving.service import PredictionMetrics, Serving, site_policies
from inference_service.settings import InferenceSettings, get_settings, quality_limits

logger = logging.getLogger("inference_service")


async def prepare_model(app: FastAPI, settings: InferenceSettings) -> None:
    """Activate a version found on disk when none is, then load it if asked to warm up."""
    if settings.auto_register:
        try:
            async with app.state.database.sessions() as session:
                activated = await registry.activate_newest_if_none(session, settings.models_dir)
                await session.commit()
            if activated:
                logger.info("activated %s found in %s", activated, settings.models_dir)
        except Exception as exc:  # the database may not be up yet; an admin can register later
            logger.warning("automatic registration skipped: %s", exc)
    if settings.warm_up:
        try:
            await app.state.serving.holder.get()
        except Exception as exc:
            logger.warning("warm-up skipped: %s", exc)


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    auth_client = create_http_client(settings.auth_url, read_timeout_s=5.0)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        serving: Serving = app.state.serving
        tasks = [
            asyncio.create_task(serving.batcher.run()),
            asyncio.create_task(serving.holder.watch(settings.registry_poll_s)),
        ]
        await prepare_model(app, settings)
        yield
        await stop_tasks(*tasks)
        await auth_client.aclose()

    app = create_service_app(
        service="inference",
        title="Inference service",
        description="Model registry, preprocessing, batched prediction and Grad-CAM heatmaps.",
        settings=settings,
        database_url=settings.database_url,
        lifespan=lifespan,
    )
    return_freed_images_to_the_system()
    holder = ModelHolder(
        app.state.database,
        settings.models_dir,
        runtime=settings.runtime,
        runtime_threads=settings.runtime_threads,
        metrics_registry=app.state.metrics_registry,
    )
    app.state.serving = Serving(
        holder=holder,
        batcher=Batcher(
            settings.batch_max_size,
            settings.batch_max_wait_ms / 1000,
            BatchMetrics(app.state.metrics_registry),
        ),
        metrics=PredictionMetrics(app.state.metrics_registry),
        max_pixels=settings.max_pixels,
        max_image_side=settings.max_image_side,
        budget=MemoryBudget(settings.image_memory_mb * 1024 * 1024, settings.image_memory_wait_s),
        policies=site_policies(settings.assessment_warn_only),
        quality_limits=quality_limits(settings),
    )
    app.state.token_verifier = jwks_token_verifier(auth_client, settings)
    worker_key = load_public_key(
        settings.slide_worker_public_key, settings.slide_worker_public_key_file
    )
    if worker_key is None:
        logger.warning("no slide worker public key: the workers' patch batches are refused")
    app.state.slide_worker_token_verifier = (
        ServiceTokenVerifier(worker_key, SLIDE_WORKER_ISSUER, SLIDE_WORKER_AUDIENCE)
        if worker_key
        else None
    )
    app.state.readiness_checks["model"] = holder.readiness
    app.include_router(serving_router)
    app.include_router(registry_router)
    return app
