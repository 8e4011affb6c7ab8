"""Typed dependencies, so routes read like their contract: who may do what (clinicians
create and read, viewers read, only admins export or read the audit trail) and what the
app factory set up for them (settings, the image files)."""

from typing import Annotated

from fastapi import Depends, Request

from common.auth import Principal, require_roles
from common.errors import ServiceError
from data_service.images.storage import ImageStore
from data_service.settings import DataSettings

Reader = Annotated[Principal, Depends(require_roles("admin", "clinician", "viewer"))]
Writer = Annotated[Principal, Depends(require_roles("admin", "clinician"))]
Admin = Annotated[Principal, Depends(require_roles("admin"))]


def app_settings(request: Request) -> DataSettings:
    return request.app.state.settings


def app_image_store(request: Request) -> ImageStore:
    return request.app.state.image_store


SettingsDep = Annotated[DataSettings, Depends(app_settings)]
ImageStoreDep = Annotated[ImageStore, Depends(app_image_store)]


def page_limit(limit: int, maximum: int) -> int:
    """`limit` within the configured maximum: a larger one is a 422, not silently cut."""
    if limit > maximum:
        raise ServiceError(422, f"limit must be at most {maximum}.", code="validation_error")
    return limit
