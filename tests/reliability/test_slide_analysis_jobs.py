"""Slide-analysis jobs survive their workers: a worker killed (SIGKILL) in the middle of an
analysis leaves its job to another worker, which resumes it from its last checkpoint, and
every tissue tile is counted exactly once."""

import os
import signal
import time
import uuid

import asyncpg
import numpy as np
import pytest

from tests.support.slide_uploads import storage_dir, upload
from tests.support.slides import pyramidal_tiff

pytestmark = pytest.mark.timeout(900)
DEADLINE_S = 600


def slides_database_url(databases) -> str:
    return databases["slides"]


async def fetch(url: str, query: str, *args):
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


def query(url: str, sql: str, *args):
    import asyncio

    return asyncio.run(fetch(url, sql, *args))


def wait_for(what: str, check, deadline_s: float = DEADLINE_S, every_s: float = 0.05):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every_s)
    raise AssertionError(f"waited {deadline_s:.0f} s for {what}")


def test_a_killed_worker_s_job_completes_on_another_with_every_tile_counted_once(
    stack, api, new_clinician, databases, tmp_path
):
    headers, _ = new_clinician()
    patient = api.post(
        "/api/v1/patients", json={"external_ref": f"K-{uuid.uuid4().hex[:8]}"}, headers=headers
    ).json()["id"]
    # 16,000 px at 0.25 µm/px: about 800 tissue tiles of the demo model, 50 batches of 16.
    path = pyramidal_tiff(tmp_path / "large.tif", 16_000, 16_000, mpp=0.25)
    uploaded = upload(api, headers, patient, path.read_bytes(), "large.tif")
    assert uploaded.status_code == 201, uploaded.text
    slide_id = uploaded.json()["id"]
    started = api.post(f"/api/v1/slides/{slide_id}/analyses", headers=headers)
    assert started.status_code == 202, started.text
    analysis_id = started.json()["id"]

    def progress():
        answer = api.get(f"/api/v1/analyses/{analysis_id}", headers=headers)
        assert answer.status_code == 200, answer.text
        return answer.json()

    running = wait_for(
        "the analysis to be part way (some batches written, not all)",
        lambda: (
            (body := progress())["status"] == "running"
            and 0 < body["progress"]["tiles_done"] < (body["progress"]["tiles_total"] or 0) // 2
            and body
        ),
    )
    slides_db = slides_database_url(databases)
    holder = query(
        slides_db,
        "SELECT worker_id FROM procrastinate_jobs WHERE args->>'analysis_id' = $1",
        analysis_id,
    )[0]["worker_id"]
    pid = int(stack.supervisorctl("pid", "slide-worker").stdout.strip())
    os.kill(pid, signal.SIGKILL)
    final = wait_for(
        "the analysis to end after its worker was killed",
        lambda: (body := progress())["status"] in ("succeeded", "failed", "cancelled") and body,
        every_s=0.5,
    )
    assert final["status"] == "succeeded", final
    assert final["attempts"] >= 2, "the job was run again after the kill"
    assert final["progress"]["tiles_done"] == final["progress"]["tiles_total"]
    assert final["progress"]["tiles_total"] > running["progress"]["tiles_done"]
    # Another worker (a new process, registered anew) finished it.
    job = query(
        slides_db,
        "SELECT status::text, attempts FROM procrastinate_jobs WHERE args->>'analysis_id' = $1",
        analysis_id,
    )[0]
    assert job["status"] == "succeeded"
    events = query(
        slides_db,
        "SELECT e.type::text FROM procrastinate_events e JOIN procrastinate_jobs j "
        "ON j.id = e.job_id WHERE j.args->>'analysis_id' = $1 ORDER BY e.id",
        analysis_id,
    )
    assert [e["type"] for e in events].count("started") >= 2
    assert holder is not None
    # The stored arrays hold exactly one result per tissue tile, and no chunk is left over.
    stored = query(
        slides_db,
        "SELECT r.reasons, m.tissue_tiles, a.grid_cols, a.grid_rows FROM analysis_results r "
        "JOIN analysis_masks m USING (analysis_id) JOIN analyses a ON a.id = r.analysis_id "
        "WHERE r.analysis_id = $1",
        uuid.UUID(analysis_id),
    )[0]
    tissue = np.frombuffer(stored["tissue_tiles"], dtype="<u4")
    reasons = np.frombuffer(stored["reasons"], dtype=np.uint8)
    assert len(reasons) == stored["grid_cols"] * stored["grid_rows"]
    assert len(tissue) == final["progress"]["tiles_total"]
    counted = np.flatnonzero(reasons != 255)
    assert np.array_equal(counted, tissue), "results exactly on the tissue tiles"
    summary = final["summary"]
    assert summary["tiles_assessed"] + sum(summary["tiles_skipped"].values()) == len(tissue)
    leftover = query(
        slides_db,
        "SELECT count(*) AS n FROM analysis_chunks WHERE analysis_id = $1",
        uuid.UUID(analysis_id),
    )[0]["n"]
    assert leftover == 0


def start_analysis(api, headers, patient: str, path, name: str) -> str:
    uploaded = upload(api, headers, patient, path.read_bytes(), name)
    assert uploaded.status_code == 201, uploaded.text
    started = api.post(f"/api/v1/slides/{uploaded.json()['id']}/analyses", headers=headers)
    assert started.status_code == 202, started.text
    return started.json()["id"]


def ended(api, headers, analysis_id: str) -> dict:
    def check():
        answer = api.get(f"/api/v1/analyses/{analysis_id}", headers=headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return body["status"] in ("succeeded", "failed", "cancelled") and body

    return wait_for(f"analysis {analysis_id} to end", check, every_s=0.5)


def test_a_corrupt_slide_fails_its_job_with_a_reason_and_the_next_job_goes_on(
    stack, api, new_clinician, tmp_path
):
    headers, _ = new_clinician()
    patient = api.post(
        "/api/v1/patients", json={"external_ref": f"C-{uuid.uuid4().hex[:8]}"}, headers=headers
    ).json()["id"]
    damaged = pyramidal_tiff(tmp_path / "damaged.tif", 3_000, 3_000, mpp=0.5)
    uploaded = upload(api, headers, patient, damaged.read_bytes(), "damaged.tif")
    assert uploaded.status_code == 201, uploaded.text
    # The stored file is damaged after it was accepted (a disk fault): its tiles are garbage.
    # (The good slide below differs in size: files are stored once per content.)
    sha256 = uploaded.json()["sha256"]
    stored = next((storage_dir(stack) / sha256[:2] / sha256).glob("slide*"))
    data = bytearray(stored.read_bytes())
    data[len(data) // 4 :] = bytes(len(data) - len(data) // 4)
    stored.write_bytes(bytes(data))
    started = api.post(f"/api/v1/slides/{uploaded.json()['id']}/analyses", headers=headers)
    assert started.status_code == 202, started.text
    good = start_analysis(
        api, headers, patient, pyramidal_tiff(tmp_path / "good.tif", 3_200, 3_000, mpp=0.5), "g.tif"
    )
    failed = ended(api, headers, started.json()["id"])
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "corrupt_slide"
    assert "damaged" in failed["error"]["message"]
    assert failed["summary"] is None
    after = ended(api, headers, good)
    assert after["status"] == "succeeded", after["error"]


def test_postgresql_stopping_mid_analysis_the_job_waits_and_resumes_counting_each_tile_once(
    stack, api, new_clinician, private_postgres, tmp_path
):
    headers, _ = new_clinician()
    patient = api.post(
        "/api/v1/patients", json={"external_ref": f"P-{uuid.uuid4().hex[:8]}"}, headers=headers
    ).json()["id"]
    analysis_id = start_analysis(
        api,
        headers,
        patient,
        pyramidal_tiff(tmp_path / "pg.tif", 12_000, 12_000, mpp=0.25),
        "p.tif",
    )

    def part_way():
        body = api.get(f"/api/v1/analyses/{analysis_id}", headers=headers).json()
        total = body["progress"]["tiles_total"] or 0
        return body["status"] == "running" and 0 < body["progress"]["tiles_done"] < total // 2

    wait_for("the analysis to be part way", part_way)
    logged_before = len(stack.log("slide-worker"))
    private_postgres.stop()
    try:
        wait_for(
            "the worker to log that it lost the database",
            lambda: (
                "lost its database" in stack.log("slide-worker")[logged_before:]
                or "state not recorded" in stack.log("slide-worker")[logged_before:]
            ),
            every_s=0.2,
        )
    finally:
        private_postgres.start()
    final = ended(api, headers, analysis_id)
    assert final["status"] == "succeeded", final
    assert final["progress"]["tiles_done"] == final["progress"]["tiles_total"]
    summary = final["summary"]
    assert (
        summary["tiles_assessed"] + sum(summary["tiles_skipped"].values()) == summary["tiles_total"]
    )
    # The API's queue connections went with the old server: the next analysis is still
    # queued at the first try.
    again = api.post(f"/api/v1/slides/{final['slide_id']}/analyses", headers=headers)
    assert again.status_code == 202, again.text
    cancelled = api.post(f"/api/v1/analyses/{again.json()['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
