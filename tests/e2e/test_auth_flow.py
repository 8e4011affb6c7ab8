"""Logging in and managing users through the gateway's `/api/v1` routes, with every service
running as `make run` starts it."""

import uuid

import httpx
import pytest
from dotenv import dotenv_values

from tests.support.launcher import RESTART_TIMEOUT_S, wait_for
from tests.support.tokens import bearer, issued_token

pytestmark = pytest.mark.timeout(600)
PASSWORD = "marble orchard sunrise 19"


@pytest.fixture(scope="module")
def api(stack):
    with httpx.Client(base_url=f"{stack.url('gateway')}/api/v1", timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def admin_credentials(stack):
    stored = dotenv_values(stack.var_dir / "admin-credentials.env")
    return stored["ADMIN_EMAIL"], stored["ADMIN_PASSWORD"]


def login(api, email, password):
    return api.post("/auth/token", data={"username": email, "password": password})


def test_make_run_printed_where_the_admin_password_is(stack):
    assert f"Admin login     in {stack.var_dir / 'admin-credentials.env'}" in stack.output()
    assert (stack.var_dir / "admin-credentials.env").stat().st_mode & 0o777 == 0o600


def test_the_admin_logs_in_and_manages_users(api, admin_credentials):
    admin = bearer(issued_token(login(api, *admin_credentials)))
    me = api.get("/auth/me", headers=admin)
    assert me.status_code == 200 and me.json()["role"] == "admin"

    email = f"clin-{uuid.uuid4().hex[:6]}@example.com"
    created = api.post(
        "/admin/users",
        json={"email": email, "full_name": "Dr Clin", "role": "clinician", "password": PASSWORD},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    clinician = bearer(issued_token(login(api, email, PASSWORD)))
    refused = api.get("/admin/users", headers=clinician)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert refused.json()["error"]["request_id"] == refused.headers["x-request-id"]

    listing = api.get("/admin/users", params={"role": "clinician"}, headers=admin)
    assert email in [user["email"] for user in listing.json()["items"]]
    user_id = created.json()["id"]
    demoted = api.patch(f"/admin/users/{user_id}", json={"role": "viewer"}, headers=admin)
    assert demoted.status_code == 200 and demoted.json()["role"] == "viewer"
    assert api.get(f"/admin/users/{user_id}", headers=admin).json()["role"] == "viewer"

    duplicate = api.post(
        "/admin/users",
        json={"email": email.upper(), "full_name": "X", "role": "viewer", "password": PASSWORD},
        headers=admin,
    )
    assert duplicate.status_code == 409
    weak = api.post(
        "/admin/users",
        json={"email": "w@example.com", "full_name": "W", "role": "viewer", "password": "password"},
        headers=admin,
    )
    assert weak.status_code == 422 and "12 characters" in weak.json()["error"]["message"]


def test_refresh_rotation_reuse_and_logout_through_the_gateway(api, admin_credentials):
    first = login(api, *admin_credentials).json()
    second = api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    reuse = api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401 and reuse.json()["error"]["code"] == "invalid_token"
    revoked = api.post("/auth/refresh", json={"refresh_token": second.json()["refresh_token"]})
    assert revoked.status_code == 401

    session = login(api, *admin_credentials).json()
    out = api.post("/auth/logout", json={"refresh_token": session["refresh_token"]})
    assert out.status_code == 204
    after = api.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert after.status_code == 401


def test_the_gateway_refuses_bad_tokens_itself(api, stack):
    for headers in (
        {},
        {"Authorization": "Bearer not.a.token"},
        {"Authorization": "Bearer " + "e30." * 2 + "sig"},
    ):
        response = api.get("/admin/users", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] in ("not_authenticated", "invalid_token")


def test_a_locked_account_gets_429_with_retry_after_through_the_gateway(api):
    email = f"ghost-{uuid.uuid4().hex[:6]}@example.com"
    answers = [login(api, email, "wrong password again").status_code for _ in range(5)]
    assert answers == [401] * 5
    locked = login(api, email, "wrong password again")
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) >= 1
    assert locked.json()["error"]["code"] == "too_many_attempts"


def test_auth_down_is_a_503_naming_it_then_recovers(api, stack, admin_credentials):
    assert "stopped" in stack.supervisorctl("stop", "auth").stdout
    try:
        down = login(api, *admin_credentials)
        assert down.status_code == 503
        assert "auth service" in down.json()["error"]["message"]
    finally:
        assert "started" in stack.supervisorctl("start", "auth").stdout
    wait_for(
        lambda: login(api, *admin_credentials).status_code == 200,
        RESTART_TIMEOUT_S,
        "a login to succeed after the auth service restarted",
    )
