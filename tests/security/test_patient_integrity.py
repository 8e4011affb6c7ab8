"""A prediction belongs to the patient it was requested for, whatever was uploaded before.

Found on a live stack: the same PNG bytes sent for patient A, then for patient B, gave a
second prediction (201) filed under A, because the data service handed out the first
upload's record for known bytes. Each upload is now its own record; the bytes are stored
once."""

import csv
import io
import uuid

import pytest

from tests.security.conftest import assert_envelope, images_with, predict
from tests.support.images import tissue_png
from tests.support.sql import fetch

pytestmark = pytest.mark.timeout(300)


def new_patient(api, headers) -> dict:
    answer = api.post(
        "/api/v1/patients", json={"external_ref": f"PI-{uuid.uuid4().hex[:8]}"}, headers=headers
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def stored_files(stack, sha256: str) -> list:
    return [p for p in (stack.var_dir / "data" / "images").rglob(sha256) if p.is_file()]


def test_the_same_bytes_for_two_patients_give_each_patient_their_own_prediction(
    api, stack, databases, clinician, admin
):
    patient_a, patient_b = new_patient(api, clinician.headers), new_patient(api, clinician.headers)
    image = tissue_png(seed=9500, size=48)

    first = predict(api, clinician.headers, image, data={"patient_id": patient_a["id"]})
    second = predict(api, clinician.headers, image, data={"patient_id": patient_b["id"]})

    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert first.json()["patient_id"] == patient_a["id"]
    assert second.json()["patient_id"] == patient_b["id"]  # was patient A's
    assert second.json()["image_id"] != first.json()["image_id"]
    # Each upload its own record, the bytes one file.
    uploads = images_with(databases, image)
    assert len(uploads) == 2
    sha256 = fetch(databases["data"], "SELECT sha256 FROM images WHERE id = $1", uploads[0]["id"])
    assert len(stored_files(stack, sha256[0]["sha256"])) == 1
    # Each overlay belongs to its own prediction's patient as well.
    overlays = fetch(
        databases["data"],
        "SELECT p.patient_id AS predicted_for, h.patient_id AS overlay_of FROM predictions p "
        "JOIN images h ON h.id = p.heatmap_ref WHERE p.id = ANY($1::uuid[])",
        [first.json()["id"], second.json()["id"]],
    )
    assert len(overlays) == 2
    assert all(row["predicted_for"] == row["overlay_of"] for row in overlays)

    # Each patient's history has their own prediction.
    for patient, prediction in ((patient_a, first), (patient_b, second)):
        history = api.get(
            "/api/v1/predictions", params={"patient_id": patient["id"]}, headers=clinician.headers
        )
        assert [p["id"] for p in history.json()["items"]] == [prediction.json()["id"]]

    # The statistics count both.
    period = {"created_from": first.json()["created_at"], "created_to": second.json()["created_at"]}
    stats = api.get("/api/v1/stats", params=period, headers=clinician.headers).json()
    assert stats["predictions"] == 2, stats

    # Reviewed, both are in the export, each under its patient.
    for prediction in (first, second):
        review = api.post(
            f"/api/v1/predictions/{prediction.json()['id']}/review",
            json={"verdict": "agree"},
            headers=clinician.headers,
        )
        assert review.status_code == 201, review.text
    export = api.get("/api/v1/exports/labels", headers=admin.headers)
    assert export.status_code == 200, export.text
    mine = {first.json()["image_id"], second.json()["image_id"]}
    rows = [r for r in csv.DictReader(io.StringIO(export.text)) if r["image_id"] in mine]
    assert sorted(r["patient"] for r in rows) == sorted(
        [patient_a["external_ref"], patient_b["external_ref"]]
    )


def test_an_idempotency_key_repeated_for_another_patient_is_refused(api, databases, clinician):
    patient_a, patient_b = new_patient(api, clinician.headers), new_patient(api, clinician.headers)
    image = tissue_png(seed=9501, size=48)
    key = {"Idempotency-Key": f"patient-{uuid.uuid4()}"}
    options = {"params": {"heatmap": "false"}, "extra_headers": key}

    first = predict(api, clinician.headers, image, data={"patient_id": patient_a["id"]}, **options)
    assert first.status_code == 201, first.text
    replay = predict(api, clinician.headers, image, data={"patient_id": patient_a["id"]}, **options)
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    # Not a repeat: A's prediction must not come back as B's answer.
    other = predict(api, clinician.headers, image, data={"patient_id": patient_b["id"]}, **options)
    assert_envelope(other, 422, "idempotency_key_reused")
    assert len(images_with(databases, image)) == 1
