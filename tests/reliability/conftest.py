"""One stack for the package, on a PostgreSQL server of its own: the outage tests stop and
start that server, which must not disturb the server the rest of the suite shares."""

import uuid

import httpx
import pytest
from dotenv import dotenv_values

from devstack.postgres import with_database
from tests.support.launcher import STACK_DATABASES, UNLIMITED, running_stack
from tests.support.private_postgres import running_private_postgres
from tests.support.stack_login import RenewingLogin
from tests.support.tokens import bearer, issued_token

PASSWORD = "granite harbour kettle 31"
# Short enough that a test sees the circuit close again within its stream.
BREAKER_RESET_S = 2


@pytest.fixture(scope="package")
def private_postgres():
    with running_private_postgres("cds-rel-pg-") as server:
        yield server


@pytest.fixture(scope="package")
def databases(private_postgres):
    return {
        name: with_database(private_postgres.url, f"rel_{name}_{uuid.uuid4().hex[:8]}")
        for name in STACK_DATABASES
    }


@pytest.fixture(scope="package")
def stack(databases, private_postgres):
    extra_env = {
        **UNLIMITED,
        "GATEWAY_PREDICT_TIMEOUT_S": "8",
        "GATEWAY_BREAKER_THRESHOLD": "3",
        "GATEWAY_BREAKER_RESET_S": str(BREAKER_RESET_S),
        # Slide-analysis workers: small batches (many checkpoints to be killed between), a
        # heartbeat each second, and a silent worker's job handed on after a few seconds.
        "SLIDE_ANALYSIS_BATCH_TILES": "16",
        "SLIDE_WORKER_HEARTBEAT_S": "1",
        "SLIDE_WORKER_STALLED_AFTER_S": "5",
        "SLIDE_WORKER_STALLED_CHECK_S": "1",
    }
    with running_stack(databases, private_postgres.url, extra_env) as launched:
        yield launched


@pytest.fixture(scope="package")
def api(stack):
    with httpx.Client(base_url=stack.url("gateway"), timeout=30) as client:
        yield client


def login(api: httpx.Client, email: str, password: str) -> dict[str, str]:
    answer = api.post("/api/v1/auth/token", data={"username": email, "password": password})
    return bearer(issued_token(answer))


@pytest.fixture(scope="package")
def new_clinician(api, stack):
    stored = dotenv_values(stack.var_dir / "admin-credentials.env")
    admin = RenewingLogin(
        lambda: api.post(
            "/api/v1/auth/token",
            data={"username": stored["ADMIN_EMAIL"], "password": stored["ADMIN_PASSWORD"]},
        )
    )

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
