"""App factory of the auth service: `uvicorn --factory auth_service.main:create_app`."""

from fastapi import FastAPI

from auth_service.settings import AuthSettings, get_settings
from common.app import create_service_app


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    return create_service_app(
        service="auth",
        title="Auth service",
        description="Users, roles, password hashes and signed tokens.",
        settings=settings,
        database_url=settings.database_url,
    )
