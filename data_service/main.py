"""App factory of the data service: `uvicorn --factory data_service.main:create_app`."""

import asyncio

from fastapi import FastAPI

from common.app import create_service_app
from data_service.settings import DataSettings, get_settings
from data_service.storage import check_storage_writable


def create_app(settings: DataSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = create_service_app(
        service="data",
        title="Data service",
        description="Patients, images, predictions, clinician reviews, audit events, statistics.",
        settings=settings,
        database_url=settings.database_url,
    )
    storage_dir = settings.storage_dir.resolve()

    async def storage_check() -> str | None:
        # File system calls block; keep them off the event loop.
        return await asyncio.to_thread(check_storage_writable, storage_dir)

    app.state.readiness_checks["storage"] = storage_check
    return app
