"""Rate limits with the `limits` library: per user on predictions and on the assistant, per
client address on login, on slide tiles and on every other `/api/v1` route.

Counts live in memory (one gateway process) or in Redis when `REDIS_URL` is set, so that
several gateway replicas share them. The sliding-window counter strategy keeps one or two
counters per key and window, so checking costs the same however busy a user is. Routes count
against the limits through the dependencies in `gateway.deps`.
"""

import logging
import math
import time

from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from prometheus_client import CollectorRegistry, Counter

from common.errors import ServiceError
from common.health import NotReady
from gateway.settings import GatewaySettings

logger = logging.getLogger("gateway.ratelimit")


class RateLimited(ServiceError):
    def __init__(self, what: str, headers: dict[str, str]) -> None:
        super().__init__(
            429,
            f"Too many {what}; try again in {headers['Retry-After']} s.",
            code="rate_limited",
            headers=headers,
        )


class RateLimits:
    """The configured limits and where their counts are kept (`app.state.rate_limits`)."""

    def __init__(self, settings: GatewaySettings, registry: CollectorRegistry) -> None:
        if settings.redis_url:
            self.storage = storage_from_string(
                f"async+{settings.redis_url}", key_prefix="cds-gateway", wrap_exceptions=True
            )
        else:
            self.storage = storage_from_string("async+memory://")
        self.strategy = SlidingWindowCounterRateLimiter(self.storage)
        self.limits = {
            "predictions": parse_many(settings.rate_limit_predictions),
            "login": parse_many(settings.rate_limit_login),
            "general": parse_many(settings.rate_limit_general),
            "assistant": parse_many(settings.rate_limit_assistant),
            "slide_tiles": parse_many(settings.rate_limit_slide_tiles),
        }
        self.shared = bool(settings.redis_url)
        self.limited = Counter(
            "gateway_rate_limited",
            "Requests refused by a rate limit.",
            ["limit"],
            registry=registry,
        )

    async def hit(self, name: str, key: str) -> dict[str, str]:
        """Count one request of `key` against limit `name`: the `X-RateLimit-*` headers of
        its tightest window, or `RateLimited` (429) when any window is used up."""
        items = self.limits[name]
        try:
            return await self._hit(name, items, key)
        except StorageError as exc:
            # Limits protect the service; losing their store must not take the API down.
            logger.warning("rate limit store unavailable, %s not counted: %s", name, exc)
            return {}

    async def _hit(self, name: str, items: list[RateLimitItem], key: str) -> dict[str, str]:
        tightest: dict[str, str] = {}
        tightest_remaining = math.inf
        for item in items:
            allowed = await self.strategy.hit(item, name, key)
            stats = await self.strategy.get_window_stats(item, name, key)
            reset_in = max(1, math.ceil(stats.reset_time - time.time()))
            headers = {
                "X-RateLimit-Limit": str(item.amount),
                "X-RateLimit-Remaining": str(max(0, stats.remaining)),
                "X-RateLimit-Reset": str(reset_in),
            }
            if not allowed:
                self.limited.labels(name).inc()
                raise RateLimited(_WHAT[name], {**headers, "Retry-After": str(reset_in)})
            if stats.remaining < tightest_remaining:
                tightest, tightest_remaining = headers, stats.remaining
        return tightest

    async def check(self) -> str | None:
        """Readiness: whether the shared store answers (memory always does)."""
        # The async storages' check() is a coroutine (limits types it for both kinds).
        if not await self.storage.check():  # type: ignore[misc]
            raise NotReady("the rate limit store (Redis) does not answer")
        return "redis" if self.shared else "memory"


_WHAT = {
    "predictions": "prediction requests",
    "login": "login attempts from this address",
    "general": "requests from this address",
    "assistant": "questions to the assistant",
    "slide_tiles": "slide tiles from this address",
}


def client_address(request: Request) -> str:
    # ProxyHeadersMiddleware has already put the real client here when the hop is trusted.
    return request.client.host if request.client else "unknown"


def remember(request: Request, headers: dict[str, str]) -> None:
    """Keep a hit's `X-RateLimit-*` headers for the security-headers middleware, which adds
    them to whatever answer the route gives."""
    if headers:
        request.state.rate_limit_headers = headers
