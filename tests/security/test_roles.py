"""A role may do only what it is allowed: a refusal is the 403 envelope and stores nothing."""

import uuid

import pytest

from tests.security.conftest import PASSWORD, assert_envelope, counts, predict
from tests.support.images import png_bytes
from tests.support.sql import fetch

pytestmark = pytest.mark.timeout(300)


def user_row(databases, user_id: str):
    [row] = fetch(
        databases["auth"],
        "SELECT email, full_name, role, is_active, password_hash, updated_at FROM users"
        " WHERE id = $1",
        uuid.UUID(user_id),
    )
    return dict(row)


def active_version(api, headers) -> str:
    [active] = [
        v for v in api.get("/api/v1/models", headers=headers).json() if v["status"] == "active"
    ]
    return active["version"]


def test_a_clinician_cannot_use_admin_routes(api, databases, clinician, other_clinician):
    users_before = counts(databases, "auth")
    row_before = user_row(databases, other_clinician.id)
    version = active_version(api, clinician.headers)
    attempts = [
        ("GET", "/api/v1/admin/users", None),
        ("GET", f"/api/v1/admin/users/{other_clinician.id}", None),
        (
            "POST",
            "/api/v1/admin/users",
            {
                "email": "mallory@example.com",
                "full_name": "M",
                "role": "admin",
                "password": PASSWORD,
            },
        ),
        ("PATCH", f"/api/v1/admin/users/{other_clinician.id}", {"is_active": False}),
        ("POST", f"/api/v1/models/{version}/activate", None),
        ("GET", "/api/v1/exports/labels", None),
    ]
    for method, path, body in attempts:
        answer = api.request(method, path, json=body, headers=clinician.headers)
        assert_envelope(answer, 403, "forbidden")
        assert "text/csv" not in answer.headers.get("content-type", "")
    assert counts(databases, "auth")["users"] == users_before["users"]
    assert user_row(databases, other_clinician.id) == row_before
    assert not fetch(databases["auth"], "SELECT 1 FROM users WHERE email = 'mallory@example.com'")


@pytest.mark.parametrize(
    "change",
    [
        {"role": "admin"},
        {"role": "admin", "full_name": "Root"},
        {"password": "a brand new passphrase 1"},
    ],
)
def test_a_clinician_cannot_change_their_own_account_through_the_admin_route(
    api, databases, clinician, change
):
    before = user_row(databases, clinician.id)
    answer = api.patch(
        f"/api/v1/admin/users/{clinician.id}", json=change, headers=clinician.headers
    )
    assert_envelope(answer, 403, "forbidden")
    assert user_row(databases, clinician.id) == before
    assert before["role"] == "clinician"
    # The token they hold still says clinician: no new rights were minted.
    assert api.get("/api/v1/auth/me", headers=clinician.headers).json()["role"] == "clinician"


def test_a_viewer_cannot_predict_review_or_write_patients(
    api, databases, viewer, prediction, patient
):
    before = counts(databases)
    attempts = [
        predict(api, viewer.headers, png_bytes(seed=9100, size=32)),
        api.post(
            "/api/v1/predictions",
            content=png_bytes(seed=9101, size=32),
            headers={**viewer.headers, "Content-Type": "image/png"},
        ),
        api.post(
            f"/api/v1/predictions/{prediction['id']}/review",
            json={"verdict": "disagree", "corrected_label": "benign", "comment": "viewer"},
            headers=viewer.headers,
        ),
        api.post("/api/v1/patients", json={"external_ref": "VIEWER-1"}, headers=viewer.headers),
        api.patch(
            f"/api/v1/patients/{patient['id']}",
            json={"notes": "viewer was here"},
            headers=viewer.headers,
        ),
        api.patch(
            f"/api/v1/admin/users/{viewer.id}", json={"role": "admin"}, headers=viewer.headers
        ),
    ]
    for answer in attempts:
        assert_envelope(answer, 403, "forbidden")
    assert counts(databases) == before
    stored = api.get(f"/api/v1/patients/{patient['id']}", headers=viewer.headers).json()
    assert stored["notes"] == patient["notes"]
    assert user_row(databases, viewer.id)["role"] == "viewer"
    # Reading stays allowed: the refusals above are about the role, not a broken token.
    assert (
        api.get(f"/api/v1/predictions/{prediction['id']}", headers=viewer.headers).status_code
        == 200
    )
