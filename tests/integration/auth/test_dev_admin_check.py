"""`make run` names the credentials file only when it opens the stack: a database kept from
another checkout keeps that checkout's admin, whom the auth service does not replace. The
check reads the auth database (a login would count as a failed attempt against the admin)."""

from devstack.secrets import admin_credentials_refused
from tests.support.auth import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.sql import fetch_async


def credentials(email: str, password: str) -> dict[str, str]:
    return {"AUTH_ADMIN_EMAIL": email, "AUTH_ADMIN_PASSWORD": password}


async def test_the_admin_the_service_created_is_accepted(auth, auth_database_url):
    assert not await admin_credentials_refused(
        auth_database_url, credentials(ADMIN_EMAIL.upper(), ADMIN_PASSWORD)
    )
    assert (await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200


async def test_another_password_for_the_existing_admin_is_refused(auth, auth_database_url):
    assert await admin_credentials_refused(
        auth_database_url, credentials(ADMIN_EMAIL, "a new clone's password 1")
    )
    # Nothing was attempted against the account: no failed login is on record.
    throttles = await fetch_async(auth_database_url, "SELECT count(*) AS n FROM login_throttles")
    assert throttles[0]["n"] == 0


async def test_another_email_while_an_admin_exists_is_refused(auth, auth_database_url):
    assert await admin_credentials_refused(
        auth_database_url, credentials("ops@example.org", ADMIN_PASSWORD)
    )


async def test_no_verdict_before_the_first_admin_exists(auth_database_url):
    # The service creates it moments after it starts; the file's password is the one it uses.
    assert not await admin_credentials_refused(
        auth_database_url, credentials(ADMIN_EMAIL, ADMIN_PASSWORD)
    )


async def test_no_verdict_when_the_database_cannot_be_reached():
    unreachable = "postgresql+asyncpg://postgres@127.0.0.1:1/auth"
    assert not await admin_credentials_refused(
        unreachable, credentials(ADMIN_EMAIL, ADMIN_PASSWORD)
    )
