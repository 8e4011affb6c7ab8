"""The error envelope shared by every service, and the exception handlers that produce it.

Every failure leaves a service as
`{"error": {"code": "...", "message": "...", "request_id": "..."}}` with the right status;
no stack trace ever reaches the client.
"""

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.logging import current_request_id

REQUEST_ID_HEADER = "X-Request-ID"

logger = logging.getLogger("common.errors")

# Stable, machine-readable codes for the statuses our services answer with.
ERROR_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class ServiceError(Exception):
    """An error a service raises on purpose; it becomes the envelope with this status and code."""

    def __init__(
        self,
        status_code: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.code = code or code_for_status(status_code)
        self.headers = headers


def code_for_status(status_code: int) -> str:
    if status_code in ERROR_CODES:
        return ERROR_CODES[status_code]
    return "client_error" if status_code < 500 else "server_error"


def _request_id(request: Request) -> str:
    # The correlation middleware writes the id into the request headers, so it is there even
    # for errors handled outside that middleware (unexpected exceptions).
    return current_request_id() or request.headers.get(REQUEST_ID_HEADER, "-")


def error_response(
    request: Request,
    status_code: int,
    message: str,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    request_id = _request_id(request)
    error: dict[str, Any] = {
        "code": code or code_for_status(status_code),
        "message": message,
        "request_id": request_id,
    }
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status_code, headers=headers)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(request, exc.status_code, exc.message, exc.code, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and exc.detail == HTTPStatus.NOT_FOUND.phrase:
        message = f"No resource at {request.method} {request.url.path}."
    elif exc.status_code == 405 and exc.detail == HTTPStatus.METHOD_NOT_ALLOWED.phrase:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    headers = dict(exc.headers) if exc.headers else None
    return error_response(request, exc.status_code, message, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only location and reason: echoing the rejected input could reflect secrets or huge bodies.
    return [
        {"location": ".".join(str(part) for part in err.get("loc", ())), "reason": err.get("msg")}
        for err in exc.errors()
    ]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc)
    summary = "; ".join(f"{d['location']}: {d['reason']}" for d in details[:5])
    return error_response(
        request, 422, f"The request is not valid: {summary}.", "validation_error", details=details
    )


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error(
        "unhandled error on %s %s",
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    # This answer is sent from outside the request-id middleware, so it sets the header itself.
    return error_response(
        request,
        500,
        "An unexpected error occurred. Quote the request id when reporting it.",
        "internal_error",
        headers={REQUEST_ID_HEADER: _request_id(request)},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, unexpected_error)
