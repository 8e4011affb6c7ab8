"""Passing a request on to a downstream service and its answer back, unchanged.

Downstream failures become the error envelope: unreachable -> 503, too slow -> 504, both
naming the service, so a caller never sees a hang or a bare 500.
"""

import httpx
from fastapi import Request, Response

from common.errors import ServiceError

# What a caller may tell a downstream service; everything else (cookies, hop-by-hop
# headers, anything spoofing our own) stays at the gateway.
REQUEST_HEADERS = ("authorization", "content-type", "accept", "accept-language")
RESPONSE_HEADERS = (
    "content-type",
    "cache-control",
    "pragma",
    "retry-after",
    "www-authenticate",
    "location",
)


class DownstreamUnavailable(ServiceError):
    def __init__(self, service: str) -> None:
        super().__init__(
            503,
            f"The {service} service is unavailable; try again shortly.",
            code="service_unavailable",
        )


class DownstreamTimeout(ServiceError):
    def __init__(self, service: str) -> None:
        super().__init__(504, f"The {service} service did not answer in time.")


async def forward(
    request: Request,
    client: httpx.AsyncClient,
    service: str,
    path: str,
    *,
    content: bytes | None = None,
    content_type: str | None = None,
) -> Response:
    """Send `request` (or `content`, when the route re-encoded the body) to `path` of `service`."""
    headers = {name: request.headers[name] for name in REQUEST_HEADERS if name in request.headers}
    if content_type is not None:
        headers["content-type"] = content_type
    if request.client is not None:
        # The downstream trusts this from the gateway only (its FORWARDED_ALLOW_IPS).
        headers["x-forwarded-for"] = request.client.host
    body = content if content is not None else await request.body()
    try:
        answer = await client.request(
            request.method, path, params=request.query_params, content=body, headers=headers
        )
    except httpx.TimeoutException as exc:
        raise DownstreamTimeout(service) from exc
    except httpx.TransportError as exc:
        raise DownstreamUnavailable(service) from exc
    return Response(
        content=answer.content,
        status_code=answer.status_code,
        headers={name: answer.headers[name] for name in RESPONSE_HEADERS if name in answer.headers},
    )
