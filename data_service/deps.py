"""Typed dependencies: who may do what (clinicians create and read, viewers read, only
admins export or read the audit trail)."""

from typing import Annotated

from fastapi import Depends

from common.auth import Principal, require_roles
from common.errors import ServiceError

Reader = Annotated[Principal, Depends(require_roles("admin", "clinician", "viewer"))]
Writer = Annotated[Principal, Depends(require_roles("admin", "clinician"))]
Admin = Annotated[Principal, Depends(require_roles("admin"))]


def page_limit(limit: int, maximum: int) -> int:
    """`limit` within the configured maximum: a larger one is a 422, not silently cut."""
    if limit > maximum:
        raise ServiceError(422, f"limit must be at most {maximum}.", code="validation_error")
    return limit
