"""App factory of the slide service: `uvicorn --factory slide_service.main:create_app`."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common.app import create_service_app, stop_tasks
from common.auth import jwks_token_verifier
from common.http import create_http_client
from slide_service.analyses import queue
from slide_service.analyses.metrics import QueueMetrics
from slide_service.analyses.routes import router as analyses_router
from slide_service.analyses.service import HeatmapCache
from slide_service.audit.routes import router as audit_router
from slide_service.reviews.routes import router as reviews_router
from slide_service.settings import SlideSettings, get_settings
from slide_service.slides import service as slides
from slide_service.slides.routes import router as slides_router
from slide_service.slides.routes import slide_ref
from slide_service.slides.storage import SlideStore
from slide_service.tiles.deepzoom import SlideRef, SlideRefs, TileServer
from slide_service.tiles.routes import router as tiles_router
from slide_service.view_links.grants import ViewGrants
from slide_service.view_links.routes import router as view_links_router

logger = logging.getLogger("slide_service")
# Upload folders nothing wrote to for this long were left by a crash: an upload under way
# writes all the time, and the gateway gives up on one whose client stalls for minutes.
LEFTOVER_IDLE_S = 3600.0
LEFTOVER_SWEEP_INTERVAL_S = 600.0


def create_app(settings: SlideSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # Refuses to build a production app without a real view-link secret.
    grants = ViewGrants(settings.view_link_key(), settings.view_link_ttl_s)
    store = SlideStore(settings.storage_dir.resolve())
    auth_client = create_http_client(settings.auth_url, read_timeout_s=5.0)
    inference_client = create_http_client(settings.inference_url, read_timeout_s=10.0)
    # Defers and cancels analysis jobs; the workers run them (`python -m slide_service.worker`).
    queue_app = queue.create_queue_app(settings.database_url)
    tile_server: TileServer | None = None

    async def sweep_leftovers() -> None:
        while True:
            try:
                removed = await asyncio.to_thread(store.sweep_temporary, LEFTOVER_IDLE_S)
                if removed:
                    logger.info("removed %d upload folders left by a crash", removed)
            except OSError as exc:  # the volume may be away for a moment; next round
                logger.warning("leftover sweep skipped: %s", type(exc).__name__)
            await asyncio.sleep(LEFTOVER_SWEEP_INTERVAL_S)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(sweep_leftovers())
        queue_pool = await queue.open_without_waiting(queue_app, settings.database_url)
        queue_gauges = asyncio.create_task(queue_metrics.refresh_forever())
        yield
        await stop_tasks(sweeper, queue_gauges)
        await queue_app.close_async()
        await queue_pool.close()
        await auth_client.aclose()
        await inference_client.aclose()
        if tile_server is not None:
            await asyncio.to_thread(tile_server.close)

    app = create_service_app(
        service="slides",
        title="Slide service",
        description="Whole-slide images: streamed uploads, metadata, deep-zoom tiles, analyses "
        "by the model as durable jobs, their regions and reviews.",
        settings=settings,
        database_url=settings.database_url,
        lifespan=lifespan,
    )
    tile_server = TileServer(
        tile_cache_bytes=settings.tile_cache_bytes,
        open_slides=settings.open_slides,
        read_threads=settings.read_threads,
        registry=app.state.metrics_registry,
        max_read_pixels=settings.max_read_pixels,
    )

    async def load_ref(slide_id: uuid.UUID) -> SlideRef:
        async with app.state.database.sessions() as session:
            return slide_ref(store, await slides.get(session, slide_id))

    async def storage_check() -> str | None:
        # File system calls block; keep them off the event loop.
        return await asyncio.to_thread(store.check_writable)

    queue_metrics = QueueMetrics(app.state.database, app.state.metrics_registry)
    app.state.readiness_checks["storage"] = storage_check
    app.state.slide_store = store
    app.state.tile_server = tile_server
    app.state.slide_refs = SlideRefs(load_ref)
    app.state.view_grants = grants
    app.state.queue_app = queue_app
    app.state.inference_client = inference_client
    app.state.heatmap_cache = HeatmapCache()
    app.state.token_verifier = jwks_token_verifier(auth_client, settings)
    for router in (
        slides_router,
        view_links_router,
        tiles_router,
        # Before the analyses: its /analyses/review-queue is not an /analyses/{analysis_id}.
        reviews_router,
        analyses_router,
        audit_router,
    ):
        app.include_router(router)
    return app
