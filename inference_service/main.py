"""App factory of the inference service: `uvicorn --factory inference_service.main:create_app`."""

from fastapi import FastAPI

from common.app import create_service_app
from inference_service.settings import InferenceSettings, get_settings


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    return create_service_app(
        service="inference",
        title="Inference service",
        description="Model registry, preprocessing, batched prediction and Grad-CAM heatmaps.",
        settings=settings,
        database_url=settings.database_url,
    )
