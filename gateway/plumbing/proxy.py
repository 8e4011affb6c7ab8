"""Passing a request on to a downstream service and its answer back.

Only the headers a downstream needs go in, and only those a caller should see come back;
failures to reach the service are the 503/504 envelopes of `gateway.plumbing.downstream`.
"""

import httpx
from fastapi import Request, Response

from common.errors import ServiceError
from gateway.plumbing.downstream import Downstreams

# What a caller may tell a downstream service; everything else (cookies, hop-by-hop
# headers, anything spoofing our own) stays at the gateway.
REQUEST_HEADERS = ("authorization", "content-type", "accept", "accept-language")
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


def downstreams(request: Request) -> Downstreams:
    return request.app.state.downstreams


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


async def forward(
    request: Request,
    service: str,
    path: str,
    *,
    idempotent: bool,
    content: bytes | None = None,
    content_type: str | None = None,
    timeout_s: float | None = None,
) -> Response:
    """Send `request` (or `content`, when the route re-encoded the body) to `path` of
    `service`, with the caller's query string, and relay the answer."""
    headers = caller_headers(request)
    if content_type is not None:
        headers["content-type"] = content_type
    body = content if content is not None else await request.body()
    answer = await downstreams(request).call(
        service,
        request.method,
        path,
        idempotent=idempotent,
        timeout_s=timeout_s,
        params=request.query_params,
        content=body,
        headers=headers,
    )
    return relay(answer)
