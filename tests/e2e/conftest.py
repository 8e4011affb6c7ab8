"""One stack as `make run` starts it, shared by the end-to-end modules that need no settings
of their own (the gateway's module starts its own, with tight limits and a scripted model
provider): every stack start costs half a minute of a slow machine."""

import pytest

from devstack.launcher import LaunchedStack
from tests.support.launcher import stack_database_urls


@pytest.fixture(scope="package")
def database_urls(new_database_url):
    return stack_database_urls(new_database_url, "e2e")


@pytest.fixture(scope="package")
def stack(database_urls, pg_server_url):
    # The auth module logs in often from one address; the login limit has its own test. Each
    # /ready reaches every service (the request-id test follows one through), so no caching:
    # the cache has its own tests (tests/unit/gateway/test_readiness.py).
    launched = LaunchedStack(
        database_urls,
        pg_server_url,
        {"GATEWAY_RATE_LIMIT_LOGIN": "1000/minute", "GATEWAY_READINESS_CACHE_S": "0"},
    )
    try:
        yield launched.start()
    finally:
        launched.close()
