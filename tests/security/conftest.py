"""One launched stack for the whole security package (real processes, real PostgreSQL),
with users of every role; the tests attack it only through the gateway."""

import hashlib
import itertools
import uuid
from dataclasses import dataclass

import httpx
import pytest
from dotenv import dotenv_values

from tests.support.launcher import UNLIMITED, running_stack, stack_database_urls
from tests.support.sql import fetch
from tests.support.stack_login import RenewingLogin

PASSWORD = "copper meadow lantern 58"
_addresses = itertools.count(1)


def new_address() -> str:
    """A client address of its own (the gateway trusts X-Forwarded-For from loopback), so
    login limits and throttling of one test never answer for another."""
    n = next(_addresses)
    return f"10.30.{n // 250}.{n % 250 + 1}"


@dataclass
class User:
    id: str
    email: str
    role: str
    session: RenewingLogin  # logged in again before its access token expires

    @property
    def access_token(self) -> str:
        return self.session.access_token

    @property
    def refresh_token(self) -> str:
        return self.session.refresh_token

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.session)


@pytest.fixture(scope="package")
def databases(new_database_url):
    return stack_database_urls(new_database_url, "sec")


@pytest.fixture(scope="package")
def stack(databases, pg_server_url):
    # Nothing (nor the fuzzer) answered 429 by accident.
    with running_stack(databases, pg_server_url, UNLIMITED) as launched:
        yield launched


@pytest.fixture(scope="package")
def api(stack):
    with httpx.Client(base_url=stack.url("gateway"), timeout=60) as client:
        yield client


def login(api: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    return api.post(
        "/api/v1/auth/token",
        data={"username": email, "password": password},
        headers={"X-Forwarded-For": new_address()},
    )


def logged_in(api: httpx.Client, user_id: str, email: str, role: str) -> User:
    session = RenewingLogin(lambda: login(api, email))
    session.tokens()
    return User(user_id, email, role, session)


@pytest.fixture(scope="package")
def admin(api, stack) -> User:
    return stack_admin(api, stack)


def stack_admin(api: httpx.Client, stack) -> User:
    """The stack's first admin (its credentials are in the stack's folder), logged in."""
    stored = dotenv_values(stack.var_dir / "admin-credentials.env")
    session = RenewingLogin(lambda: login(api, stored["ADMIN_EMAIL"], stored["ADMIN_PASSWORD"]))
    me = api.get("/api/v1/auth/me", headers=session)
    assert me.status_code == 200, me.text
    return User(me.json()["id"], stored["ADMIN_EMAIL"], "admin", session)


def create_user(api: httpx.Client, admin: User, role: str) -> User:
    """A new account of `role`, made by `admin`, logged in."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    created = api.post(
        "/api/v1/admin/users",
        json={"email": email, "full_name": role, "role": role, "password": PASSWORD},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    return logged_in(api, created.json()["id"], email, role)


@pytest.fixture(scope="package")
def new_user(api, admin):
    """A new account of `role`, logged in."""

    def create(role: str = "clinician") -> User:
        return create_user(api, admin, role)

    return create


@pytest.fixture(scope="package")
def clinician(new_user) -> User:
    return new_user("clinician")


@pytest.fixture(scope="package")
def other_clinician(new_user) -> User:
    return new_user("clinician")


@pytest.fixture(scope="package")
def viewer(new_user) -> User:
    return new_user("viewer")


def assert_envelope(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert {"code", "message", "request_id"} <= set(error), error
    assert error["request_id"] == response.headers["x-request-id"]
    if code is not None:
        assert error["code"] == code, error
    return error


def assert_client_error(response: httpx.Response, *statuses: int) -> dict:
    """A 4xx error envelope (one of `statuses` when given)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text)
    return assert_envelope(response, response.status_code)


TABLES = {
    "data": ("patients", "images", "predictions", "reviews", "audit_events"),
    "auth": ("users", "refresh_tokens"),
}


def counts(databases, service: str = "data") -> dict[str, int]:
    return {
        table: fetch(databases[service], f"SELECT count(*) AS n FROM {table}")[0]["n"]
        for table in TABLES[service]
    }


def images_with(databases, data: bytes) -> list:
    return fetch(
        databases["data"],
        "SELECT id FROM images WHERE sha256 = $1",
        hashlib.sha256(data).hexdigest(),
    )


def predict(api, headers, image: bytes, name="slide.png", content_type="image/png", **kwargs):
    return api.post(
        "/api/v1/predictions",
        files={"file": (name, image, content_type)},
        headers={**headers, **kwargs.pop("extra_headers", {})},
        **kwargs,
    )


@pytest.fixture(scope="package")
def patient(api, clinician) -> dict:
    answer = api.post(
        "/api/v1/patients",
        json={"external_ref": f"SEC-{uuid.uuid4().hex[:8]}"},
        headers=clinician.headers,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


@pytest.fixture(scope="package")
def prediction(api, clinician, patient) -> dict:
    """A prediction of the first clinician's, on their patient."""
    from tests.support.images import png_bytes

    answer = predict(
        api,
        clinician.headers,
        png_bytes(seed=9001, size=32),
        data={"patient_id": patient["id"]},
        params={"heatmap": "false"},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()
