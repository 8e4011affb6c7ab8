"""Small apps built on the shared plumbing, for testing the plumbing itself."""

import httpx
from fastapi import FastAPI
from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from common.app import create_service_app
from common.errors import ServiceError
from common.http import create_http_client
from common.settings import ServiceSettings


class PlumbingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PLUMBING_TEST_")
    port: int = 0


class Measurement(BaseModel):
    name: str = Field(min_length=1)
    value: float = Field(ge=0)


def create_plumbing_app(downstream: httpx.MockTransport | None = None) -> FastAPI:
    app = create_service_app(service="plumbing", title="plumbing", settings=PlumbingSettings())

    @app.post("/measurements")
    async def create(measurement: Measurement) -> Measurement:
        return measurement

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    @app.get("/teapot")
    async def teapot() -> None:
        raise ServiceError(409, "That name is taken.", code="name_taken")

    @app.get("/call-downstream")
    async def call_downstream() -> dict[str, str]:
        async with create_http_client("http://downstream", transport=downstream) as client:
            response = await client.get("/echo")
        return response.json()

    return app
