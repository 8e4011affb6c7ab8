"""Rate limits: counted per key and window, shared through Redis between replicas, and
never the reason the API goes down."""

import uuid

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from common.health import NotReady
from devstack.postgres import free_port
from gateway.plumbing.ratelimit import RateLimited, RateLimits
from gateway.settings import GatewaySettings
from tests.support.redis import redis_url


@pytest.fixture(scope="module")
def shared_redis():
    with redis_url() as url:
        yield url


def limits(**settings) -> RateLimits:
    return RateLimits(GatewaySettings(**settings), CollectorRegistry())


async def test_a_key_gets_its_quota_then_429_with_the_headers():
    rate_limits = limits(rate_limit_predictions="3/minute")
    remaining = [
        (await rate_limits.hit("predictions", "user-a"))["X-RateLimit-Remaining"] for _ in range(3)
    ]
    assert remaining == ["2", "1", "0"]
    with pytest.raises(RateLimited) as refused:
        await rate_limits.hit("predictions", "user-a")
    assert refused.value.status_code == 429
    headers = refused.value.headers
    assert headers["X-RateLimit-Limit"] == "3"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(headers["Retry-After"]) <= 60
    # Another key, or another limit for the same key, is counted on its own.
    assert (await rate_limits.hit("predictions", "user-b"))["X-RateLimit-Remaining"] == "2"
    assert await rate_limits.hit("general", "user-a")


async def test_several_windows_all_apply_and_the_tightest_is_reported():
    rate_limits = limits(rate_limit_login="2/minute;100/hour")
    first = await rate_limits.hit("login", "10.0.0.1")
    assert first == {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "1",
        **{"X-RateLimit-Reset": first["X-RateLimit-Reset"]},
    }
    await rate_limits.hit("login", "10.0.0.1")
    with pytest.raises(RateLimited):
        await rate_limits.hit("login", "10.0.0.1")


async def test_replicas_share_counts_through_redis(shared_redis):
    user = f"user-{uuid.uuid4()}"
    first_replica = limits(rate_limit_predictions="2/minute", redis_url=shared_redis)
    second_replica = limits(rate_limit_predictions="2/minute", redis_url=shared_redis)
    await first_replica.hit("predictions", user)
    await second_replica.hit("predictions", user)
    with pytest.raises(RateLimited):
        await first_replica.hit("predictions", user)
    assert await first_replica.check() == "redis"


def test_redis_url_is_read_from_the_plain_variable(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    assert GatewaySettings().redis_url == "redis://cache:6379/0"


async def test_a_lost_redis_lets_requests_through_and_fails_readiness():
    rate_limits = limits(
        rate_limit_predictions="1/minute", redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    assert await rate_limits.hit("predictions", "user") == {}
    assert await rate_limits.hit("predictions", "user") == {}
    with pytest.raises(NotReady, match="Redis"):
        await rate_limits.check()


@pytest.mark.parametrize("bad", ["many/hour", "10 per fortnight", ""])
def test_an_unreadable_limit_is_refused_at_start(bad):
    with pytest.raises(ValidationError, match="rate_limit_predictions"):
        GatewaySettings(rate_limit_predictions=bad)
