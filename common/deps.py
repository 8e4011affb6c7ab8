"""Dependencies on what an app factory keeps on `app.state`, for each service's `deps.py`."""

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from common.errors import ServiceError


def app_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency that returns `request.app.state.<name>`; wrap it in `Annotated` with the
    attribute's type, so a route takes it typed. Async, so FastAPI calls it on the event loop
    rather than sending a plain lookup to its thread pool."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    dependency.__name__ = f"app_state_{name}"
    return dependency


def page_limit(limit: int, maximum: int) -> int:
    """`limit` within the configured maximum: a larger one is a 422, not silently cut."""
    if limit > maximum:
        raise ServiceError(422, f"limit must be at most {maximum}.", code="validation_error")
    return limit
