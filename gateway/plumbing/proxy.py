"""Passing a request on to a downstream service and its answer back.

Only the headers a downstream needs go in, and only those a caller should see come back;
failures to reach the service are the 503/504 envelopes of `gateway.plumbing.downstream`.
"""

from urllib.parse import urlencode

import httpx
from fastapi import Request, Response

from common.errors import ServiceError
from gateway.plumbing.downstream import Downstreams

# What a caller may tell a downstream service; everything else (cookies, hop-by-hop
# headers, anything spoofing our own) stays at the gateway.
REQUEST_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "accept-language",
    "if-none-match",  # a cached tile or image is answered 304 by its service
)
RESPONSE_HEADERS = (
    "content-type",
    "content-disposition",
    "cache-control",
    "etag",
    "pragma",
    "retry-after",
    "www-authenticate",
    "location",
)


def caller_identity(request: Request) -> dict[str, str]:
    """Who is calling: their token and their address, for calls the gateway composes."""
    headers = {}
    if "authorization" in request.headers:
        headers["authorization"] = request.headers["authorization"]
    if request.client is not None:
        # The downstream trusts this from the gateway only (its FORWARDED_ALLOW_IPS).
        headers["x-forwarded-for"] = request.client.host
    return headers


def caller_headers(request: Request) -> dict[str, str]:
    """`caller_identity` and what describes the caller's body, for a request passed on."""
    headers = {name: request.headers[name] for name in REQUEST_HEADERS if name in request.headers}
    return {**headers, **caller_identity(request)}


def relay(answer: httpx.Response) -> Response:
    """The downstream's answer, as ours."""
    return Response(
        content=answer.content,
        status_code=answer.status_code,
        headers={name: answer.headers[name] for name in RESPONSE_HEADERS if name in answer.headers},
    )


def raise_for_answer(answer: httpx.Response) -> None:
    """A downstream's error answer (already an envelope) raised as ours, same status and code;
    a 5xx of a downstream is its unavailability to our caller."""
    if answer.status_code < 400:
        return
    try:
        error = answer.json()["error"]
        message, code = str(error["message"]), str(error["code"])
    except (ValueError, KeyError, TypeError):
        message, code = f"The downstream service answered {answer.status_code}.", None
    headers = {k: answer.headers[k] for k in ("retry-after",) if k in answer.headers}
    raise ServiceError(answer.status_code, message, code=code, headers=headers or None)


class Proxy:
    """The request a route is answering, to be passed on to a downstream service."""

    def __init__(self, request: Request, downstreams: Downstreams) -> None:
        self.request = request
        self.downstreams = downstreams

    async def forward(
        self, service: str, path: str, *, idempotent: bool, form: dict[str, str] | None = None
    ) -> Response:
        """Send the request to `path` of `service`, with the caller's query string, and relay
        the answer. With `form` (the fields of a form the route has parsed) the body is that
        form, encoded again."""
        request = self.request
        headers = caller_headers(request)
        if form is None:
            body = await request.body()
        else:
            body = urlencode(form).encode()
            headers["content-type"] = "application/x-www-form-urlencoded"
        answer = await self.downstreams.call(
            service,
            request.method,
            path,
            idempotent=idempotent,
            params=request.query_params,
            content=body,
            headers=headers,
        )
        return relay(answer)
