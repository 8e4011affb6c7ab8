import pytest

from tests.support.auth import running_auth
from tests.support.sql import fetch_async


@pytest.fixture(scope="module")
def auth_database(migrated_database_url) -> str:
    return migrated_database_url("auth")


@pytest.fixture
async def auth_database_url(auth_database):
    """The module's auth database, emptied before each test."""
    await fetch_async(
        auth_database,
        "TRUNCATE users, refresh_tokens, login_throttles, known_login_addresses CASCADE",
    )
    return auth_database


@pytest.fixture
async def auth(auth_database_url):
    async with running_auth(auth_database_url) as harness:
        yield harness
