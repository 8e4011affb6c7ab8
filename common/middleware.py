"""ASGI middleware every service installs: request ids and one access log line per request."""

import logging
import re
import time

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import REQUEST_ID_HEADER

access_logger = logging.getLogger("access")

# Ids from callers are kept when they look like ids (uuid, nginx $request_id, trace ids); anything
# else is replaced, so a caller cannot inject text into our logs or response headers.
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Probes and scrapes arrive every few seconds; logging them at INFO would drown real traffic.
_QUIET_PATHS = frozenset({"/health", "/metrics"})


def is_acceptable_request_id(value: str) -> bool:
    return bool(_ACCEPTABLE_REQUEST_ID.match(value))


class HttpMiddleware:
    """A plain ASGI middleware (no response buffering, so streams stay streamed) for HTTP
    requests: anything else, such as the lifespan messages, passes straight through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class AccessLogMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_with_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            path = scope.get("path", "")
            level = logging.DEBUG if path in _QUIET_PATHS else logging.INFO
            access_logger.log(
                level,
                "%s %s %s",
                scope.get("method"),
                path,
                status_holder["status"],
                extra={
                    "method": scope.get("method"),
                    "path": path,
                    "status": status_holder["status"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": (scope.get("client") or ("-",))[0],
                },
            )


def install_request_middleware(app: FastAPI) -> None:
    # Added last = outermost: the request id must exist before anything else logs.
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(
        CorrelationIdMiddleware,
        header_name=REQUEST_ID_HEADER,
        validator=is_acceptable_request_id,
    )
