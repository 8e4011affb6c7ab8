"""Browser tests: Debian's Chromium (installed by `make test`), driven headless by Playwright,
against the whole stack as `make run` starts it. Screenshots of every page are kept in
`TEST_ARTIFACTS_DIR` (default `var/test-artifacts`); CI uploads them."""

import os
import uuid
from pathlib import Path

import httpx
import pytest
from dotenv import dotenv_values
from playwright.sync_api import Browser, sync_playwright

from devstack import ROOT
from devstack.launcher import LaunchedStack
from tests.support.launcher import stack_database_urls
from tests.support.tokens import bearer

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
# Without these, Chromium keeps trying Google's hosts, which a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "copper meadow lantern 58"


@pytest.fixture(scope="session")
def screenshots_dir() -> Path:
    folder = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / "var" / "test-artifacts"))
    folder = folder / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(pg_server_url, new_database_url) -> Browser:
    # Playwright's sync API keeps an event loop running in this thread while it is open, and
    # asyncio.run refuses to start inside one: so the browser lives for one module only, and
    # the fixtures that call asyncio.run (the database server, its clean-up) are set up
    # before it and torn down after it.
    if not CHROMIUM.is_file():
        pytest.fail(
            f"No Chromium at {CHROMIUM}: `make test` installs Debian's chromium package "
            "(or set CHROMIUM_PATH)."
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


# One stack for the package (both modules, on one worker: tests/conftest.py); only the
# browser is per module.
@pytest.fixture(scope="package")
def stack(new_database_url, pg_server_url):
    databases = stack_database_urls(new_database_url, "browser")
    launched = LaunchedStack(
        databases,
        pg_server_url,
        # Every browser signs in from the frontend's own address here.
        extra_env={"GATEWAY_RATE_LIMIT_LOGIN": "1000/minute"},
    )
    try:
        yield launched.start()
    finally:
        launched.close()


@pytest.fixture(scope="package")
def admin_credentials(stack) -> tuple[str, str]:
    stored = dotenv_values(stack.var_dir / "admin-credentials.env")
    return stored["ADMIN_EMAIL"], stored["ADMIN_PASSWORD"]


@pytest.fixture(scope="package")
def new_user(stack, admin_credentials):
    """Users made through the API, so a test starts from a known account."""

    def create(role: str) -> str:
        with httpx.Client(base_url=stack.url("gateway"), timeout=30) as api:
            email, password = admin_credentials
            token = api.post(
                "/api/v1/auth/token", data={"username": email, "password": password}
            ).json()["access_token"]
            made = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
            created = api.post(
                "/api/v1/admin/users",
                json={"email": made, "full_name": f"Dr {role}", "role": role, "password": PASSWORD},
                headers=bearer(token),
            )
            assert created.status_code == 201, created.text
        return made

    return create
