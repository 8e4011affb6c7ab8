"""How the tests build each service's app against a database of their choosing."""

import tempfile
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI

from auth_service.main import create_app as create_auth_app
from auth_service.settings import AuthSettings
from auth_service.tokens.keys import ensure_key_file
from data_service.main import create_app as create_data_app
from data_service.settings import DataSettings
from inference_service.main import create_app as create_inference_app
from inference_service.settings import InferenceSettings
from slide_service.main import create_app as create_slide_app
from slide_service.settings import SlideSettings
from tests.support.tokens import GATEWAY_SERVICE_PUBLIC_PEM


def auth_app(database_url: str, **overrides: object) -> FastAPI:
    if "keys_dir" not in overrides and "signing_key" not in overrides:
        keys_dir = Path(tempfile.mkdtemp(prefix="cds-keys-"))
        ensure_key_file(keys_dir)
        overrides["keys_dir"] = keys_dir
    return create_auth_app(AuthSettings(database_url=database_url, **overrides))


def inference_app(database_url: str, **overrides: object) -> FastAPI:
    return create_inference_app(InferenceSettings(database_url=database_url, **overrides))


def data_app(database_url: str, storage_dir: Path | None = None, **overrides: object) -> FastAPI:
    if storage_dir is not None:
        overrides["storage_dir"] = storage_dir
    if "gateway_service_public_key_file" not in overrides:
        overrides.setdefault("gateway_service_public_key", GATEWAY_SERVICE_PUBLIC_PEM)
    return create_data_app(DataSettings(database_url=database_url, **overrides))


def slide_app(database_url: str, storage_dir: Path | None = None, **overrides: object) -> FastAPI:
    overrides["storage_dir"] = storage_dir or Path(tempfile.mkdtemp(prefix="cds-slides-"))
    return create_slide_app(SlideSettings(database_url=database_url, **overrides))


DATABASE_SERVICES: dict[str, Callable[..., FastAPI]] = {
    "auth": auth_app,
    "inference": inference_app,
    "data": data_app,
    "slides": slide_app,
}
