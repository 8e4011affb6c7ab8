"""Typed dependencies, so routes read like their contract: who may do what (clinicians
create and read, viewers read, only admins export or read the audit trail) and what the
app factory set up for them (settings, the image files)."""

from typing import Annotated

from fastapi import Depends

# Who may call: the same three rules in every service.
from common.auth import Admin as Admin
from common.auth import Reader as Reader
from common.auth import Writer as Writer
from common.deps import app_state
from common.errors import ServiceError
from data_service.images.storage import ImageStore
from data_service.settings import DataSettings

SettingsDep = Annotated[DataSettings, Depends(app_state("settings"))]
ImageStoreDep = Annotated[ImageStore, Depends(app_state("image_store"))]


def page_limit(limit: int, maximum: int) -> int:
    """`limit` within the configured maximum: a larger one is a 422, not silently cut."""
    if limit > maximum:
        raise ServiceError(422, f"limit must be at most {maximum}.", code="validation_error")
    return limit
