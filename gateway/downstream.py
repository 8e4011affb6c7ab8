"""The gateway's pooled HTTP clients, one per downstream service, and their readiness checks."""

import httpx

from common.health import NotReady, ReadinessCheck
from common.http import create_http_client
from gateway.settings import GatewaySettings


class DownstreamNotReady(NotReady):
    """A downstream is unreachable, says it is not ready, or answered something unexpected."""


class Downstreams:
    def __init__(self, settings: GatewaySettings) -> None:
        self.clients: dict[str, httpx.AsyncClient] = {
            name: create_http_client(
                url,
                connect_timeout_s=settings.downstream_connect_timeout_s,
                read_timeout_s=settings.downstream_read_timeout_s,
            )
            for name, url in settings.downstream_urls().items()
        }

    def readiness_check(self, name: str) -> ReadinessCheck:
        client = self.clients[name]

        async def check() -> str | None:
            try:
                response = await client.get("/ready")
            except httpx.TransportError as exc:
                raise DownstreamNotReady(f"unreachable ({type(exc).__name__})") from exc
            if response.status_code == 200:
                return None
            raise DownstreamNotReady(_not_ready_reason(response))

        return check

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()


def _not_ready_reason(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"answered {response.status_code}"
    return f"answered {response.status_code}: {message}"
