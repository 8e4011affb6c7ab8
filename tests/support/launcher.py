"""What the tests add to `devstack.launcher`: waits with deadlines that say what they waited
for, stacks without rate limits, and a started stack for a `with` block."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from devstack.launcher import LaunchedStack
from devstack.stack import COMPONENTS

# The stack's components with a database of their own: a launched stack needs a URL for each.
STACK_DATABASES = tuple(c.name for c in COMPONENTS if c.database)

# How long a restarted service may take to serve again: the inference service imports
# TensorFlow first (12 s on an idle machine here, several times that on a slow or busy one).
RESTART_TIMEOUT_S = 180.0


def wait_for(check, timeout_s: float, what: str | None = None, interval_s: float = 0.3):
    """Poll `check()` until it returns something truthy, and return that. At the deadline:
    with `what` (what is awaited, for the failure message), fail saying so; without it,
    return the last value, for a caller that measures whether it came."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            if what is not None:
                raise AssertionError(
                    f"gave up after {timeout_s:.0f} s waiting for {what} (last: {value!r})"
                )
            return value
        time.sleep(interval_s)


def get(url: str, **kwargs) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=10, **kwargs)
    except httpx.TransportError:
        return None


# Rate limits high enough that no test is answered 429 by accident.
UNLIMITED = {
    "GATEWAY_RATE_LIMIT_PREDICTIONS": "100000/minute",
    "GATEWAY_RATE_LIMIT_LOGIN": "100000/minute",
    "GATEWAY_RATE_LIMIT_GENERAL": "100000/minute",
    "GATEWAY_RATE_LIMIT_ASSISTANT": "100000/minute",
}


def stack_database_urls(new_database_url, prefix: str) -> dict[str, str]:
    """A new database, named `<prefix>_<component>`, for each component that has one."""
    return {name: new_database_url(f"{prefix}_{name}") for name in STACK_DATABASES}


@contextmanager
def running_stack(
    database_urls: dict[str, str], server_url: str, extra_env: dict[str, str] | None = None
) -> Iterator[LaunchedStack]:
    """A started stack, stopped (and its folder removed) when the block ends."""
    launched = LaunchedStack(database_urls, server_url, extra_env)
    try:
        yield launched.start()
    finally:
        launched.close()
