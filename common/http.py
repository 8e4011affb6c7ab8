"""httpx clients for calls between services: timeouts always, the request id passed on."""

import httpx

from common.errors import REQUEST_ID_HEADER
from common.logging import current_request_id


async def _propagate_request_id(request: httpx.Request) -> None:
    request_id = current_request_id()
    if request_id and REQUEST_ID_HEADER not in request.headers:
        request.headers[REQUEST_ID_HEADER] = request_id


def create_http_client(
    base_url: str,
    *,
    connect_timeout_s: float = 2.0,
    read_timeout_s: float = 10.0,
    max_connections: int = 100,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """A pooled client for one downstream service; never without a timeout."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        event_hooks={"request": [_propagate_request_id]},
        transport=transport,
    )
