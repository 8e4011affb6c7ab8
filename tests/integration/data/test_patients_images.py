"""Patients and content-addressed images."""

import asyncio
import uuid

from data_service.images.storage import ImageStore
from tests.support.data import png_bytes
from tests.support.sql import fetch_async
from tests.support.tokens import bearer, mint_token


async def test_patients_are_created_read_updated_and_searched(data):
    created = await data.patient("H-2026-001")
    assert created["sex"] == "unknown" and created["created_by"] == data.clinician_id
    await data.patient("H-2026-002")
    await data.patient("X-9")
    duplicate = await data.client.post(
        "/patients", json={"external_ref": "H-2026-001"}, headers=data.clinician
    )
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "reference_taken"
    changed = await data.client.patch(
        f"/patients/{created['id']}",
        json={"birth_year": 1961, "sex": "female"},
        headers=data.clinician,
    )
    assert changed.json()["birth_year"] == 1961 and changed.json()["sex"] == "female"
    viewer = bearer(mint_token("viewer"))
    found = (await data.client.get("/patients?search=h-2026", headers=viewer)).json()
    assert [p["external_ref"] for p in found["items"]] == ["H-2026-001", "H-2026-002"]
    page = (await data.client.get("/patients?limit=1&offset=1", headers=viewer)).json()
    assert page["total"] == 3 and [p["external_ref"] for p in page["items"]] == ["H-2026-002"]


async def test_patient_bad_input(data):
    viewer = bearer(mint_token("viewer"))
    assert (
        await data.client.post("/patients", json={"external_ref": "A-1"}, headers=viewer)
    ).status_code == 403
    name_like = await data.client.post(
        "/patients", json={"external_ref": "Jane Doe"}, headers=data.clinician
    )
    assert name_like.status_code == 422
    missing = await data.client.get(f"/patients/{uuid.uuid4()}", headers=viewer)
    assert missing.status_code == 404
    too_big = await data.client.get("/patients?limit=101", headers=viewer)
    assert too_big.status_code == 422 and "at most 100" in too_big.json()["error"]["message"]
    assert (await data.client.get("/patients")).status_code == 401
    # Values PostgreSQL cannot take are the caller's error (found by fuzzing the gateway).
    nul = await data.client.get("/patients", params={"search": "A\x00B"}, headers=viewer)
    assert nul.status_code == 422 and nul.json()["error"]["code"] == "validation_error"
    notes = await data.client.post(
        "/patients", json={"external_ref": "N-1", "notes": "a\x00b"}, headers=data.clinician
    )
    assert notes.status_code == 422
    far = await data.client.get("/patients", params={"offset": 10**21}, headers=viewer)
    assert far.status_code == 422


async def test_references_that_could_name_another_file_are_refused(data, data_db):
    # The reference becomes part of a file name in the label export.
    reasons = {
        "../../etc/cron.d/x": "'/' or '\\'",
        "H-1/../../x": "'/' or '\\'",
        "H\\..\\x": "'/' or '\\'",
        "H..1": "'..'",
        ".H-1": "start with '.'",
        "H-1\n": "control characters",
        "H\x1b[31m": "control characters",
    }
    patient = await data.patient("H-2026.001")  # single dots are a hospital's own
    for reference, reason in reasons.items():
        for method, path in (("POST", "/patients"), ("PATCH", f"/patients/{patient['id']}")):
            refused = await data.client.request(
                method, path, json={"external_ref": reference}, headers=data.clinician
            )
            assert refused.status_code == 422, (method, reference)
            error = refused.json()["error"]
            assert error["code"] == "validation_error", (method, reference)
            assert "a patient reference must not" in error["message"], (method, reference)
            assert reason in error["message"], (method, reference)
    stored = await fetch_async(data_db, "SELECT external_ref FROM patients")
    assert [row["external_ref"] for row in stored] == ["H-2026.001"]


async def test_the_same_bytes_are_stored_once(data, data_db, tmp_path):
    patient = await data.patient("H-7")
    first = await data.client.post(
        "/images",
        params={"patient_id": patient["id"]},
        headers=data.clinician,
        files={"file": ("a.png", png_bytes(1), "image/png")},
    )
    assert first.status_code == 201
    body = first.json()
    assert (body["width"], body["height"], body["content_type"]) == (24, 24, "image/png")
    again = await data.client.post(
        "/images", content=png_bytes(1), headers={**data.clinician, "Content-Type": "image/png"}
    )
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    content = await data.client.get(
        f"/images/{body['id']}/content", headers=bearer(mint_token("viewer"))
    )
    assert content.content == png_bytes(1) and content.headers["content-type"] == "image/png"
    stored = ImageStore(tmp_path / "images").path_for(body["sha256"])
    assert stored.read_bytes() == png_bytes(1)


async def test_concurrent_identical_uploads_make_one_row_and_one_file(data, data_db, tmp_path):
    answers = await asyncio.gather(
        *(
            data.client.post(
                "/images",
                content=png_bytes(5),
                headers={**data.clinician, "Content-Type": "image/png"},
            )
            for _ in range(8)
        )
    )
    assert {a.status_code for a in answers} <= {200, 201}
    assert len({a.json()["id"] for a in answers}) == 1
    rows = await fetch_async(data_db, "SELECT count(*) AS n FROM images")
    assert rows[0]["n"] == 1
    files = [
        p
        for p in (tmp_path / "images").rglob("*")
        if p.is_file() and not p.name.startswith(".ready")
    ]
    assert len(files) == 1


async def test_image_bad_input(data):
    headers = {**data.clinician, "Content-Type": "image/png"}
    assert (
        await data.client.post("/images", content=b"not an image", headers=headers)
    ).status_code == 415
    assert (await data.client.post("/images", content=b"", headers=headers)).status_code == 400
    unknown = await data.client.post(
        "/images", params={"patient_id": str(uuid.uuid4())}, content=png_bytes(2), headers=headers
    )
    assert unknown.status_code == 404
    assert (
        await data.client.get(f"/images/{uuid.uuid4()}", headers=data.clinician)
    ).status_code == 404


async def test_a_crash_before_the_commit_leaves_only_an_orphan_file_that_is_cleaned_up(
    data, data_db, tmp_path, monkeypatch
):
    from data_service.images import service as images

    kept = await data.image(10)
    original_record = images.record

    async def crash(*args, **kwargs):
        raise RuntimeError("the process dies here")

    monkeypatch.setattr(images, "record", crash)
    response = await data.client.post(
        "/images", content=png_bytes(11), headers={**data.clinician, "Content-Type": "image/png"}
    )
    assert response.status_code == 500
    monkeypatch.setattr(images, "record", original_record)
    rows = await fetch_async(data_db, "SELECT sha256 FROM images")
    assert [r["sha256"] for r in rows] == [kept["sha256"]]  # no row for the lost upload
    store = ImageStore(tmp_path / "images")
    orphans = [p for p in (tmp_path / "images").glob("*/*") if p.name != kept["sha256"]]
    assert len(orphans) == 1  # the file was written, harmlessly
    async with data.app.state.database.sessions() as session:
        assert await images.purge_orphans(session, store, grace_s=3600) == 0  # too recent
        assert await images.purge_orphans(session, store, grace_s=-1) == 1
    assert store.path_for(kept["sha256"]).is_file()
    assert not orphans[0].exists()
