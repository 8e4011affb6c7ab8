"""Calls to the downstream services: one pooled client each, a timeout per call, retries with
backoff for calls that are safe to repeat, and a circuit breaker per service.

A call that cannot reach its service becomes `DownstreamUnavailable` (503) or
`DownstreamTimeout` (504), both naming the service. After `breaker_threshold` consecutive
failures the service's circuit opens and calls fail at once, without touching the network,
until `breaker_reset_s` has passed; the next call then tests the service and closes the
circuit again when it succeeds. An answer of any status, even 5xx, is the service being
there, so it neither opens the circuit nor is retried.
"""

import asyncio
import math
import time

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from common.errors import ServiceError
from common.health import NotReady, ReadinessCheck
from common.http import create_http_client
from gateway.settings import GatewaySettings


class DownstreamUnavailable(ServiceError):
    def __init__(self, service: str, retry_after_s: int | None = None) -> None:
        super().__init__(
            503,
            f"The {service} service is unavailable; try again shortly.",
            code="service_unavailable",
            headers={"Retry-After": str(retry_after_s)} if retry_after_s else None,
        )


class DownstreamTimeout(ServiceError):
    def __init__(self, service: str) -> None:
        super().__init__(504, f"The {service} service did not answer in time.")


class DownstreamNotReady(NotReady):
    """A downstream is unreachable, says it is not ready, or answered something unexpected."""


# Failures where the request cannot have reached the service: repeating any call is safe.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures after the request may have been processed: repeated only for idempotent calls.
# A read timeout is not among them: a slow service is answered with 504 at once, not
# given the same work again.
CONNECTION_LOST = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


class DownstreamMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "gateway_downstream_request_seconds",
            "Time of calls to downstream services, retries included.",
            ["service"],
            registry=registry,
        )
        self.errors = Counter(
            "gateway_downstream_errors",
            "Failed downstream calls by service and kind "
            "(unavailable, timeout, circuit_open, server_error).",
            ["service", "kind"],
            registry=registry,
        )
        self.retries = Counter(
            "gateway_downstream_retries",
            "Downstream calls repeated after a connection failure.",
            ["service"],
            registry=registry,
        )


class Downstreams:
    def __init__(self, settings: GatewaySettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.clients: dict[str, httpx.AsyncClient] = {
            name: create_http_client(
                url,
                connect_timeout_s=settings.downstream_connect_timeout_s,
                read_timeout_s=settings.downstream_timeout_s,
            )
            for name, url in settings.downstream_urls().items()
        }
        self.breakers = AsyncCircuitBreakerFactory(
            default_threshold=settings.breaker_threshold,
            default_ttl=settings.breaker_reset_s,
            # A caller hanging up says nothing about the service; nor does an error in the
            # body the caller streams through us (an upload cut off or over its limit),
            # which is raised from inside the call.
            exclude=[asyncio.CancelledError, ServiceError],
        )
        self.metrics = DownstreamMetrics(registry)

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        idempotent: bool,
        timeout_s: float | None = None,
        **kwargs,
    ) -> httpx.Response:
        """`method path` on `service`; any answer is returned as it is (the caller decides
        what its status means), a failure to get one raises the 503/504 envelope."""
        client = self.clients[service]
        retryable = NEVER_SENT + CONNECTION_LOST if idempotent else NEVER_SENT
        timeout = timeout_s or self.settings.downstream_timeout_s
        started = time.perf_counter()
        try:
            async with await self.breakers.get_breaker(service):
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception(lambda exc: isinstance(exc, retryable)),
                    stop=stop_after_attempt(self.settings.retry_attempts),
                    wait=wait_exponential_jitter(
                        multiplier=self.settings.retry_backoff_s, max=2.0, jitter=0.05
                    ),
                    before_sleep=lambda _: self.metrics.retries.labels(service).inc(),
                    reraise=True,
                ):
                    with attempt:
                        answer = await client.request(
                            method,
                            path,
                            timeout=httpx.Timeout(
                                timeout, connect=self.settings.downstream_connect_timeout_s
                            ),
                            **kwargs,
                        )
        except OpenedState as exc:
            self.metrics.errors.labels(service, "circuit_open").inc()
            reopens_in = exc.opened_at + self.settings.breaker_reset_s - time.time()
            raise DownstreamUnavailable(service, max(1, math.ceil(reopens_in))) from exc
        except httpx.TimeoutException as exc:
            self.metrics.errors.labels(service, "timeout").inc()
            raise DownstreamTimeout(service) from exc
        except httpx.TransportError as exc:
            self.metrics.errors.labels(service, "unavailable").inc()
            raise DownstreamUnavailable(service) from exc
        finally:
            self.metrics.seconds.labels(service).observe(time.perf_counter() - started)
        if answer.status_code >= 500:
            self.metrics.errors.labels(service, "server_error").inc()
        return answer

    def readiness_check(self, name: str) -> ReadinessCheck:
        client = self.clients[name]

        async def check() -> str | None:
            # Straight to the service, past the breaker: readiness reports what is, now.
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
    """The downstream's own reason, for our log; our public `/ready` never shows it."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"answered {response.status_code}"
    return f"answered {response.status_code}: {message}"
