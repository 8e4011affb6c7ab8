"""Patients, and images: a record per upload, the bytes stored once per content."""

import asyncio
import hashlib
import os
import uuid
from pathlib import Path

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


def stored_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".ready")]


async def test_the_same_bytes_for_two_patients_are_two_records_sharing_one_file(
    data, data_db, tmp_path
):
    """The defect: the second upload of known bytes was given the first upload's record,
    and with it the first patient."""
    first_patient, second_patient = await data.patient("H-7"), await data.patient("H-8")
    first = await data.upload(png_bytes(1), first_patient["id"])
    assert first.status_code == 201
    body = first.json()
    assert (body["width"], body["height"], body["content_type"]) == (24, 24, "image/png")
    second = await data.upload(png_bytes(1), second_patient["id"])
    assert second.status_code == 201, second.text
    assert second.json()["id"] != body["id"]
    assert second.json()["patient_id"] == second_patient["id"]
    assert second.json()["sha256"] == body["sha256"]
    unassigned = await data.client.post(
        "/images", content=png_bytes(1), headers={**data.clinician, "Content-Type": "image/png"}
    )
    assert unassigned.status_code == 201 and unassigned.json()["patient_id"] is None
    rows = await fetch_async(data_db, "SELECT id, patient_id FROM images ORDER BY created_at")
    assert [str(r["patient_id"]) if r["patient_id"] else None for r in rows] == [
        first_patient["id"],
        second_patient["id"],
        None,
    ]
    for record in (body, second.json(), unassigned.json()):
        content = await data.client.get(
            f"/images/{record['id']}/content", headers=bearer(mint_token("viewer"))
        )
        assert content.content == png_bytes(1) and content.headers["content-type"] == "image/png"
    [stored] = stored_files(tmp_path / "images")
    assert stored == ImageStore(tmp_path / "images").path_for(body["sha256"])
    assert stored.read_bytes() == png_bytes(1)


async def test_concurrent_uploads_of_the_same_bytes_get_their_own_records_and_share_one_file(
    data, data_db, tmp_path
):
    patients = [await data.patient(f"H-C{n}") for n in range(8)]
    answers = await asyncio.gather(
        *(data.upload(png_bytes(5), patient["id"]) for patient in patients)
    )
    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    assert [a.json()["patient_id"] for a in answers] == [p["id"] for p in patients]
    assert len({a.json()["id"] for a in answers}) == 8
    rows = await fetch_async(data_db, "SELECT count(DISTINCT patient_id) AS n FROM images")
    assert rows[0]["n"] == 8
    assert len(stored_files(tmp_path / "images")) == 1


async def test_a_repeated_idempotency_key_gives_the_first_record_even_concurrently(data, data_db):
    patient = await data.patient("H-K1")
    answers = await asyncio.gather(
        *(data.upload(png_bytes(6), patient["id"], key="upload-1") for _ in range(6))
    )
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    rows = await fetch_async(data_db, "SELECT count(*) AS n FROM images")
    assert rows[0]["n"] == 1
    # The same key for other bytes, or for another patient, is another upload: refused.
    other_patient = await data.patient("H-K2")
    for refused in (
        await data.upload(png_bytes(7), patient["id"], key="upload-1"),
        await data.upload(png_bytes(6), other_patient["id"], key="upload-1"),
        await data.upload(png_bytes(6), None, key="upload-1"),
    ):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "idempotency_key_reused"
    assert (await fetch_async(data_db, "SELECT count(*) AS n FROM images"))[0]["n"] == 1
    # Keys are the uploader's own: another clinician's same key is a new upload.
    someone_else = bearer(mint_token("clinician"))
    other = await data.client.post(
        "/images",
        content=png_bytes(6),
        headers={**someone_else, "Content-Type": "image/png", "Idempotency-Key": "upload-1"},
    )
    assert other.status_code == 201 and other.json()["id"] != answers[0].json()["id"]


async def test_a_file_shared_by_records_stays_and_an_old_orphan_gains_time_when_uploaded_again(
    data, tmp_path
):
    from data_service.images import service as images

    store = ImageStore(tmp_path / "images")
    first, second = await data.patient("H-P1"), await data.patient("H-P2")
    shared = await data.image(12, first["id"])
    await data.image(12, second["id"])
    # A file no record names, left long ago (a crash before the commit).
    orphan = store.write("ab" * 32, png_bytes(13))
    os.utime(orphan, (1_000_000_000, 1_000_000_000))
    async with data.app.state.database.sessions() as session:
        assert await images.purge_orphans(session, store, grace_s=-1) == 1
    assert store.path_for(shared["sha256"]).is_file()
    assert not orphan.exists()
    # Old orphan bytes uploaded again: the file is renewed, so a sweep running before this
    # upload's record is committed leaves it alone.
    stale = store.write(hashlib.sha256(png_bytes(14)).hexdigest(), png_bytes(14))
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    store.write(stale.name, png_bytes(14))
    async with data.app.state.database.sessions() as session:
        assert await images.purge_orphans(session, store, grace_s=3600) == 0
    assert stale.is_file()


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
