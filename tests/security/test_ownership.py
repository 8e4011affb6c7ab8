"""Whose data is whose: an Idempotency-Key belongs to the caller who used it, and ids that
do not exist (or are not ids) are a 404 (or 422) envelope, never someone's data or a 500."""

import uuid

import pytest

from tests.security.conftest import assert_client_error, assert_envelope, predict
from tests.support.images import png_bytes
from tests.support.sql import fetch

pytestmark = pytest.mark.timeout(300)


def predictions_of(databases, user_id: str) -> list:
    return fetch(
        databases["data"],
        "SELECT id, idempotency_key FROM predictions WHERE requested_by = $1 ORDER BY created_at",
        uuid.UUID(user_id),
    )


def test_an_idempotency_key_replays_only_the_callers_own_prediction(api, databases, new_user):
    first, second = new_user("clinician"), new_user("clinician")
    key = {"Idempotency-Key": f"shared-{uuid.uuid4()}"}
    image = png_bytes(seed=9200, size=32)

    original = predict(api, first.headers, image, extra_headers=key, params={"heatmap": "false"})
    assert original.status_code == 201, original.text
    replay = predict(api, first.headers, image, extra_headers=key, params={"heatmap": "false"})
    assert replay.status_code == 200 and replay.json()["id"] == original.json()["id"]

    # Another clinician guessing or copying the key gets a prediction of their own.
    same_image = predict(api, second.headers, image, extra_headers=key, params={"heatmap": "false"})
    assert same_image.status_code == 201, same_image.text
    assert "idempotent-replayed" not in same_image.headers
    assert same_image.json()["id"] != original.json()["id"]
    assert same_image.json()["requested_by"] == second.id
    # A different image under that key is not "reused" for them either: nothing about the
    # first clinician's use of the key shows.
    second_key = {"Idempotency-Key": f"shared-{uuid.uuid4()}"}
    mine = predict(api, first.headers, image, extra_headers=second_key, params={"heatmap": "false"})
    assert mine.status_code == 201, mine.text
    theirs = predict(
        api,
        second.headers,
        png_bytes(seed=9201, size=32),
        extra_headers=second_key,
        params={"heatmap": "false"},
    )
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != mine.json()["id"]

    assert [str(r["id"]) for r in predictions_of(databases, first.id)] == [
        original.json()["id"],
        mine.json()["id"],
    ]
    assert [str(r["id"]) for r in predictions_of(databases, second.id)] == [
        same_image.json()["id"],
        theirs.json()["id"],
    ]


def test_a_prediction_records_the_caller_not_a_claimed_owner(api, clinician, other_clinician):
    # Fields naming an owner are not part of the upload: the token decides.
    answer = api.post(
        "/api/v1/predictions",
        files={"file": ("slide.png", png_bytes(seed=9202, size=32), "image/png")},
        data={"requested_by": other_clinician.id, "uploaded_by": other_clinician.id},
        params={"heatmap": "false"},
        headers=clinician.headers,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["requested_by"] == clinician.id


@pytest.mark.parametrize(
    "method, path, role",
    [
        ("GET", "/api/v1/predictions/{id}", "viewer"),
        ("GET", "/api/v1/predictions/{id}/image", "viewer"),
        ("GET", "/api/v1/predictions/{id}/heatmap", "viewer"),
        ("GET", "/api/v1/predictions/{id}/reviews", "viewer"),
        ("POST", "/api/v1/predictions/{id}/review", "clinician"),
        ("GET", "/api/v1/patients/{id}", "viewer"),
        ("PATCH", "/api/v1/patients/{id}", "clinician"),
        ("GET", "/api/v1/admin/users/{id}", "admin"),
        ("PATCH", "/api/v1/admin/users/{id}", "admin"),
    ],
)
def test_unknown_and_malformed_ids_get_404_or_422(
    api, method, path, role, admin, clinician, viewer
):
    headers = {"admin": admin, "clinician": clinician, "viewer": viewer}[role].headers
    body = {
        "/review": {"verdict": "agree"},
        "/patients/{id}": {"notes": "x"},
        "/users/{id}": {"full_name": "x"},
    }
    json = next((b for suffix, b in body.items() if path.endswith(suffix)), None)
    unknown = api.request(method, path.format(id=uuid.uuid4()), json=json, headers=headers)
    error = assert_envelope(unknown, 404)
    assert error["code"].endswith("not_found"), error
    for bad in ("1 OR 1=1", "00000000-0000-0000-0000-00000000000g"):
        malformed = api.request(method, path.format(id=bad), json=json, headers=headers)
        assert_envelope(malformed, 422, "validation_error")
    # Dot segments leave the route altogether: no resource there, never a file.
    traversal = api.request(
        method, path.format(id="..%2F..%2Fetc%2Fpasswd"), json=json, headers=headers
    )
    assert_client_error(traversal, 404, 422)
    assert "root:" not in traversal.text


def test_unknown_model_versions_and_figures_get_404(api, viewer, admin):
    assert_envelope(api.get("/api/v1/models/no-such-version", headers=viewer.headers), 404)
    assert_envelope(api.post("/api/v1/models/no-such-version/activate", headers=admin.headers), 404)
    figure = api.get(
        "/api/v1/models/no-such-version/figures/exploration/samples.png", headers=viewer.headers
    )
    assert_envelope(figure, 404)
