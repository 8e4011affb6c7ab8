"""One stack for the package, on a PostgreSQL server of its own: the outage tests stop and
start that server, which must not disturb the server the rest of the suite shares."""

import shutil
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest
from dotenv import dotenv_values

from devstack.postgres import PrivatePostgres, free_port, with_database
from tests.support.launcher import LaunchedStack
from tests.support.stack_fixtures import shared_models_dir  # noqa: F401 - a session fixture

PASSWORD = "granite harbour kettle 31"
# Short enough that a test sees the circuit close again within its stream.
BREAKER_RESET_S = 2


@pytest.fixture(scope="package")
def private_postgres():
    base = Path(tempfile.mkdtemp(prefix="cds-rel-pg-"))
    base.chmod(0o755)  # as root, the server runs as an unprivileged user who must reach it
    server = PrivatePostgres(base, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="package")
def databases(private_postgres):
    return {
        name: with_database(private_postgres.url, f"rel_{name}_{uuid.uuid4().hex[:8]}")
        for name in ("auth", "inference", "data")
    }


@pytest.fixture(scope="package")
def stack(databases, private_postgres):
    launched = LaunchedStack(
        databases,
        private_postgres.url,
        extra_env={
            "GATEWAY_RATE_LIMIT_PREDICTIONS": "100000/minute",
            "GATEWAY_RATE_LIMIT_LOGIN": "100000/minute",
            "GATEWAY_RATE_LIMIT_GENERAL": "100000/minute",
            "GATEWAY_PREDICT_TIMEOUT_S": "8",
            "GATEWAY_BREAKER_THRESHOLD": "3",
            "GATEWAY_BREAKER_RESET_S": str(BREAKER_RESET_S),
        },
    )
    try:
        yield launched.start()
    finally:
        launched.close()


@pytest.fixture(scope="package")
def api(stack):
    with httpx.Client(base_url=stack.url("gateway"), timeout=30) as client:
        yield client


def login(api: httpx.Client, email: str, password: str) -> dict[str, str]:
    answer = api.post("/api/v1/auth/token", data={"username": email, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@pytest.fixture(scope="package")
def new_clinician(api, stack):
    stored = dotenv_values(stack.var_dir / "admin-credentials.env")
    admin = login(api, stored["ADMIN_EMAIL"], stored["ADMIN_PASSWORD"])

    def create() -> tuple[dict[str, str], str]:
        email = f"clinician-{uuid.uuid4().hex[:8]}@example.com"
        created = api.post(
            "/api/v1/admin/users",
            json={
                "email": email,
                "full_name": "Clinician",
                "role": "clinician",
                "password": PASSWORD,
            },
            headers=admin,
        )
        assert created.status_code == 201, created.text
        return login(api, email, PASSWORD), created.json()["id"]

    return create
