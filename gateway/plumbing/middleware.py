"""The gateway's edge: security headers on every answer, and request bodies cut off at their
limit while they stream in.

Both are plain ASGI middleware (no response buffering), so a streamed answer stays streamed
and a huge upload is refused after the limit, not after it has all arrived.
"""

import json
from collections.abc import Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import ServiceError, code_for_status
from common.logging import current_request_id
from common.middleware import HttpMiddleware

# API answers are data, never a page: nothing may load, run or frame them.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The interactive docs (Swagger UI, ReDoc) load their script and styles from jsDelivr.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; worker-src blob:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
HSTS = "max-age=63072000; includeSubDomains"


class SecurityHeadersMiddleware(HttpMiddleware):
    """Adds the security headers, the rate-limit headers a route's limit left in the
    request state, and `Cache-Control: no-store` where the answer set no caching rule."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
                headers["Cross-Origin-Resource-Policy"] = "same-origin"
                headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
                headers["Content-Security-Policy"] = (
                    DOCS_CSP if scope["path"] in DOCS_PATHS else API_CSP
                )
                # Behind a TLS-terminating proxy (a trusted X-Forwarded-Proto), the scheme
                # is https: only then does HSTS mean anything to the browser.
                if scope.get("scheme") == "https":
                    headers["Strict-Transport-Security"] = HSTS
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
                for name, value in scope.get("state", {}).get("rate_limit_headers", {}).items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(ServiceError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"The request body is larger than {_readable(limit)}.",
            code="payload_too_large",
            # The server stops reading the rest instead of draining it.
            headers={"Connection": "close"},
        )


class BodyLimitMiddleware(HttpMiddleware):
    """Refuses a body over its limit: at once when Content-Length says so, else as soon as
    the bytes received pass it (the route reading the body gets `BodyTooLarge`, which the
    error handlers answer with 413). The upload routes (`upload_limits`: path -> limit)
    have limits of their own.

    An answer given before the body has all arrived (401, 429, 413, ...) closes the
    connection, so the server does not go on reading, and discarding, the rest.
    """

    def __init__(self, app: ASGIApp, default_limit: int, upload_limits: Mapping[str, int]) -> None:
        super().__init__(app)
        self.default_limit = default_limit
        self.upload_limits = upload_limits

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.upload_limits.get(scope["path"], self.default_limit)
        declared, chunked = _body_framing(scope)
        if declared is not None and declared > limit:
            await _refuse(send, BodyTooLarge(limit))
            return
        received = 0
        body_pending = chunked or bool(declared)

        async def capped_receive() -> Message:
            nonlocal received, body_pending
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                body_pending = message.get("more_body", False)
            return message

        async def send_closing_early(message: Message) -> None:
            if message["type"] == "http.response.start" and body_pending:
                MutableHeaders(scope=message)["Connection"] = "close"
            await send(message)

        await self.app(scope, capped_receive, send_closing_early)


def _body_framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared Content-Length (None when absent or unreadable), and whether the body
    comes chunked."""
    declared, chunked = None, False
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = None
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return declared, chunked


async def _refuse(send: Send, error: ServiceError) -> None:
    # Answered here, outside the app; "Connection: close" tells the server not to read on.
    body = json.dumps(
        {
            "error": {
                "code": error.code or code_for_status(error.status_code),
                "message": error.message,
                "request_id": current_request_id(),
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _readable(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{size // 1024} KB"
