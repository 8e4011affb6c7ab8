"""Users: the first admin, creation under the password rules, listing, role changes,
deactivation, password resets and the last-admin guard."""

import uuid

import jwt
from sqlalchemy import func, select

from auth_service.users.models import User
from tests.support.auth import ADMIN_EMAIL, ADMIN_PASSWORD, running_auth
from tests.support.sql import fetch_async

GOOD_PASSWORD = "copper heron drifting 58"


def error_of(response) -> dict:
    return response.json()["error"]


async def test_the_first_admin_is_created_once(auth_database_url):
    async with running_auth(auth_database_url):
        pass
    async with running_auth(auth_database_url, admin_email="second@example.com"):
        pass  # an active admin exists: nobody new is created
    rows = await fetch_async(auth_database_url, "SELECT email, role FROM users")
    assert [(r["email"], r["role"]) for r in rows] == [(ADMIN_EMAIL, "admin")]


async def test_a_weak_admin_password_creates_nobody(auth_database_url):
    async with running_auth(auth_database_url, admin_password="password1234"):
        pass
    assert await fetch_async(auth_database_url, "SELECT id FROM users") == []


async def test_admin_creates_a_user_who_can_log_in(auth):
    user = await auth.create_user("Dr.Lee@Hospital.example", role="clinician")
    assert user["email"] == "Dr.Lee@hospital.example"  # the domain is normalised
    assert user["role"] == "clinician" and user["is_active"] is True
    assert "password" not in user and "password_hash" not in user
    login = await auth.login("dr.lee@hospital.example", "distinct pelican 4491")
    assert login.status_code == 200


async def test_the_stored_password_is_an_argon2id_hash(auth, auth_database_url):
    await auth.create_user("hash@example.com")
    [row] = await fetch_async(
        auth_database_url, "SELECT password_hash FROM users WHERE email = 'hash@example.com'"
    )
    assert row["password_hash"].startswith("$argon2id$")
    assert "distinct pelican" not in row["password_hash"]


async def test_a_duplicate_email_in_any_case_is_409(auth):
    await auth.create_user("twin@example.com")
    response = await auth.client.post(
        "/users",
        json={
            "email": "TWIN@example.com",
            "full_name": "Other",
            "role": "viewer",
            "password": GOOD_PASSWORD,
        },
        headers=await auth.login_header(),
    )
    assert response.status_code == 409
    assert error_of(response)["code"] == "email_taken"
    assert "Other" not in response.text and "twin" not in response.text.lower()


async def test_weak_passwords_are_422_naming_the_rule(auth):
    headers = await auth.login_header()
    cases = {
        "short pass": "at least 12 characters",
        "weak@example.com": "must not be the email",
        "qwerty123456": "most commonly used",
        "1QAZ2WSX3EDC": "most commonly used",  # the list is compared ignoring case
    }
    for password, rule in cases.items():
        response = await auth.client.post(
            "/users",
            json={
                "email": "weak@example.com",
                "full_name": "Weak",
                "role": "viewer",
                "password": password,
            },
            headers=headers,
        )
        assert response.status_code == 422, password
        assert error_of(response)["code"] == "weak_password"
        assert rule in error_of(response)["message"], password
        assert password not in response.text
    listed = (await auth.client.get("/users", headers=headers)).json()
    assert [u["email"] for u in listed["items"]] == [ADMIN_EMAIL]  # nothing was stored


async def test_bad_fields_are_422_without_echoing_them(auth):
    headers = await auth.login_header()
    for body in (
        {"email": "not-an-email", "full_name": "X", "role": "viewer", "password": GOOD_PASSWORD},
        {
            "email": "a@example.com",
            "full_name": "X",
            "role": "superuser",
            "password": GOOD_PASSWORD,
        },
        {"email": "a@example.com", "full_name": "", "role": "viewer", "password": GOOD_PASSWORD},
        {"email": "a@example.com", "full_name": "X", "role": "viewer"},
        {
            "email": "a@example.com",
            "full_name": "X",
            "role": "viewer",
            "password": GOOD_PASSWORD,
            "is_admin": True,
        },
    ):
        response = await auth.client.post("/users", json=body, headers=headers)
        assert response.status_code == 422, body
        assert error_of(response)["code"] == "validation_error"
        assert GOOD_PASSWORD not in response.text


async def test_only_admins_manage_users(auth):
    await auth.create_user("clin@example.com", role="clinician")
    await auth.create_user("view@example.com", role="viewer")
    for email in ("clin@example.com", "view@example.com"):
        headers = await auth.login_header(email, "distinct pelican 4491")
        listing = await auth.client.get("/users", headers=headers)
        assert listing.status_code == 403
        assert error_of(listing)["code"] == "forbidden"
        creation = await auth.client.post(
            "/users",
            json={
                "email": "x@example.com",
                "full_name": "X",
                "role": "admin",
                "password": GOOD_PASSWORD,
            },
            headers=headers,
        )
        assert creation.status_code == 403
        assert (await auth.client.get("/me", headers=headers)).status_code == 200
    assert (await auth.client.get("/users")).status_code == 401


async def test_listing_pages_and_filters(auth):
    for index in range(5):
        await auth.create_user(f"c{index}@example.com", role="clinician")
    await auth.create_user("v@example.com", role="viewer")
    headers = await auth.login_header()
    page = (await auth.client.get("/users?limit=2&offset=1", headers=headers)).json()
    assert page["total"] == 7 and page["limit"] == 2 and page["offset"] == 1
    assert [u["email"] for u in page["items"]] == ["c0@example.com", "c1@example.com"]
    clinicians = (await auth.client.get("/users?role=clinician", headers=headers)).json()
    assert clinicians["total"] == 5
    assert {u["role"] for u in clinicians["items"]} == {"clinician"}
    bad = await auth.client.get("/users?limit=0", headers=headers)
    assert bad.status_code == 422
    assert (await auth.client.get("/users?role=wizard", headers=headers)).status_code == 422


async def test_role_change_takes_effect_at_the_next_refresh(auth):
    user = await auth.create_user("promote@example.com", role="viewer")
    pair = await auth.tokens("promote@example.com", "distinct pelican 4491")
    changed = await auth.client.patch(
        f"/users/{user['id']}", json={"role": "clinician"}, headers=await auth.login_header()
    )
    assert changed.status_code == 200 and changed.json()["role"] == "clinician"
    refreshed = await auth.client.post("/refresh", json={"refresh_token": pair["refresh_token"]})
    claims = jwt.decode(refreshed.json()["access_token"], options={"verify_signature": False})
    assert claims["role"] == "clinician"


async def test_deactivation_blocks_login_and_revokes_sessions_until_reactivated(auth):
    user = await auth.create_user("leaver@example.com")
    pair = await auth.tokens("leaver@example.com", "distinct pelican 4491")
    admin = await auth.login_header()
    off = await auth.client.patch(f"/users/{user['id']}", json={"is_active": False}, headers=admin)
    assert off.json()["is_active"] is False
    login = await auth.login("leaver@example.com", "distinct pelican 4491")
    assert login.status_code == 401
    assert error_of(login)["message"] == "Incorrect email or password."
    refresh = await auth.client.post("/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401
    me = await auth.client.get("/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.status_code == 401  # /me checks the account, not only the token

    await auth.client.patch(f"/users/{user['id']}", json={"is_active": True}, headers=admin)
    assert (await auth.login("leaver@example.com", "distinct pelican 4491")).status_code == 200


async def test_password_reset_replaces_the_password_and_ends_sessions(auth):
    user = await auth.create_user("forgetful@example.com")
    pair = await auth.tokens("forgetful@example.com", "distinct pelican 4491")
    admin = await auth.login_header()
    weak = await auth.client.patch(
        f"/users/{user['id']}", json={"password": "short"}, headers=admin
    )
    assert weak.status_code == 422 and error_of(weak)["code"] == "weak_password"
    reset = await auth.client.patch(
        f"/users/{user['id']}", json={"password": GOOD_PASSWORD}, headers=admin
    )
    assert reset.status_code == 200
    assert (await auth.login("forgetful@example.com", "distinct pelican 4491")).status_code == 401
    assert (await auth.login("forgetful@example.com", GOOD_PASSWORD)).status_code == 200
    refresh = await auth.client.post("/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401


async def test_the_last_active_admin_cannot_be_demoted_or_deactivated(auth, auth_database_url):
    admin = await auth.login_header()
    me = (await auth.client.get("/me", headers=admin)).json()
    for change in ({"role": "clinician"}, {"is_active": False}):
        response = await auth.client.patch(f"/users/{me['id']}", json=change, headers=admin)
        assert response.status_code == 409, change
        assert error_of(response)["code"] == "last_admin"
    # With a second active admin, the first may step down.
    await auth.create_user("deputy@example.com", role="admin")
    demoted = await auth.client.patch(f"/users/{me['id']}", json={"role": "viewer"}, headers=admin)
    assert demoted.status_code == 200
    rows = await fetch_async(
        auth_database_url, "SELECT count(*) AS n FROM users WHERE role = 'admin' AND is_active"
    )
    assert rows[0]["n"] == 1
    # A deactivated admin does not count as the remaining one.
    deputy = await auth.login_header("deputy@example.com", "distinct pelican 4491")
    deputy_id = (await auth.client.get("/me", headers=deputy)).json()["id"]
    last = await auth.client.patch(f"/users/{deputy_id}", json={"is_active": False}, headers=deputy)
    assert last.status_code == 409


async def test_unknown_user_ids_are_404_and_bad_ids_422(auth):
    admin = await auth.login_header()
    missing = await auth.client.get(f"/users/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404 and error_of(missing)["code"] == "user_not_found"
    patch = await auth.client.patch(
        f"/users/{uuid.uuid4()}", json={"role": "viewer"}, headers=admin
    )
    assert patch.status_code == 404
    assert (await auth.client.get("/users/not-a-uuid", headers=admin)).status_code == 422


async def test_an_old_hash_is_upgraded_at_the_next_login(auth_database_url):
    async with running_auth(auth_database_url):  # the admin is hashed with t=1
        pass
    [before] = await fetch_async(auth_database_url, "SELECT password_hash FROM users")
    assert ",t=1," in before["password_hash"]
    async with running_auth(auth_database_url, argon2_time_cost=2) as auth:
        wrong = await auth.login(ADMIN_EMAIL, "not it, not it at all")
        assert wrong.status_code == 401
        [unchanged] = await fetch_async(auth_database_url, "SELECT password_hash FROM users")
        assert unchanged["password_hash"] == before["password_hash"]  # only on success
        assert (await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200
    [after] = await fetch_async(auth_database_url, "SELECT password_hash FROM users")
    assert ",t=2," in after["password_hash"]
    async with running_auth(auth_database_url, argon2_time_cost=2) as auth:
        assert (await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200


async def test_user_rows_count_matches_listing_total(auth, auth_database_url):
    await auth.create_user("one@example.com")
    listing = (await auth.client.get("/users", headers=await auth.login_header())).json()
    async with auth.app.state.database.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(User))
    assert listing["total"] == count == 2


async def test_explicit_nulls_change_nothing(auth):
    admin = await auth.login_header()
    me = (await auth.client.get("/me", headers=admin)).json()
    response = await auth.client.patch(
        f"/users/{me['id']}",
        json={"role": None, "is_active": None, "full_name": None},
        headers=admin,
    )
    assert response.status_code == 200
    assert response.json()["role"] == "admin" and response.json()["is_active"] is True
    assert response.json()["full_name"] == me["full_name"]


async def test_values_the_database_cannot_take_are_4xx_not_500(auth):
    nul = await auth.login("a\x00b@example.com", "pass\x00word")
    assert nul.status_code == 422, nul.text
    admin = await auth.login_header()
    far = await auth.client.get("/users", params={"offset": 10**21}, headers=admin)
    assert far.status_code == 422
