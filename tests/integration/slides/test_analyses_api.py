"""Starting, reading and cancelling slide analyses through the slide service's API, against a
migrated database with procrastinate's tables: the analysis row and its job, the refusals,
the audit trail and the queue's metrics.

The happy path asks the real inference service (in-process, a small trained model) for the
active model. For the refusals that depend on what the inference service says (no active
model, a card without a scale), a small real ASGI app serving /models and /models/{version}
stands in for it, mounted with httpx.ASGITransport: the inference service cannot be made to
hold such a model without training one."""

import uuid

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from slide_service.analyses.metrics import QueueMetrics
from tests.support.inference import copy_versions, running_inference
from tests.support.slides import pyramidal_tiff
from tests.support.sql import fetch_async
from tests.support.tokens import bearer, mint_token


@pytest.fixture(scope="module")
def tiff_bytes(tmp_path_factory) -> bytes:
    return pyramidal_tiff(tmp_path_factory.mktemp("tiff") / "a.tiff", 1024, 768, 0.25).read_bytes()


@pytest.fixture
def inference_db(migrated_database_url):
    return migrated_database_url("inference")


@pytest.fixture
async def inference(trained_versions, inference_db, tmp_path):
    models = copy_versions(trained_versions, tmp_path / "models", ["tiny-a"])
    async with running_inference(inference_db, models) as (_, client):
        yield client


@pytest.fixture
def with_inference(slides, inference):
    slides.app.state.inference_client = inference
    return slides


def stand_in(models: list[dict], cards: dict[str, dict]) -> httpx.AsyncClient:
    app = FastAPI()

    @app.get("/models")
    def listed() -> list[dict]:
        return models

    @app.get("/models/{version}")
    def detail(version: str) -> dict:
        return {"version": version, "card": cards[version]}

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://inference")


async def start(harness, slide_id, headers=None) -> httpx.Response:
    return await harness.client.post(
        f"/slides/{slide_id}/analyses", headers=headers or harness.clinician
    )


async def test_an_analysis_is_a_row_and_a_job_and_one_per_slide(
    with_inference, slides_db, tiff_bytes
):
    harness = with_inference
    slide = await harness.slide(tiff_bytes, "a.tiff")
    started = await start(harness, slide["id"])
    assert started.status_code == 202, started.text
    body = started.json()
    assert started.headers["location"] == f"/api/v1/analyses/{body['id']}"
    assert body["status"] == "queued" and body["model_version"] == "tiny-a"
    assert body["requested_by"] == harness.clinician_id
    [row] = await fetch_async(slides_db, "SELECT status, job_id FROM analyses")
    [job] = await fetch_async(
        slides_db, "SELECT id, queue_name, lock, status::text, args FROM procrastinate_jobs"
    )
    assert row["job_id"] == job["id"] and job["status"] == "todo"
    assert job["queue_name"] == "slide-analyses"
    assert job["lock"] == f"analyses-of-user-{harness.clinician_id}"
    again = await start(harness, slide["id"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "analysis_in_progress"
    # The queue as /metrics reports it.
    metrics = QueueMetrics(harness.app.state.database, CollectorRegistry())
    await metrics.refresh()
    assert metrics.depth.labels("todo")._value.get() == 1
    assert metrics.depth.labels("doing")._value.get() == 0
    assert metrics.oldest._value.get() > 0
    assert metrics.workers._value.get() == 0
    # Unfinished: no regions yet.
    regions = await harness.client.get(f"/analyses/{body['id']}/regions", headers=harness.viewer)
    assert regions.status_code == 409
    # Cancel: the job too; twice is refused.
    cancelled = await harness.client.post(
        f"/analyses/{body['id']}/cancel", headers=harness.clinician
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    [job] = await fetch_async(slides_db, "SELECT status::text FROM procrastinate_jobs")
    assert job["status"] == "cancelled"
    twice = await harness.client.post(f"/analyses/{body['id']}/cancel", headers=harness.admin)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "not_cancellable"
    actions = [
        r["action"]
        for r in await fetch_async(slides_db, "SELECT action FROM audit_events ORDER BY at")
    ]
    assert actions[-2:] == ["analysis_started", "analysis_cancelled"]
    # Another one may start once the first is no longer active.
    assert (await start(harness, slide["id"])).status_code == 202


async def test_who_may_start_and_what_does_not_exist(with_inference, tiff_bytes):
    harness = with_inference
    slide = await harness.slide(tiff_bytes, "a.tiff")
    viewer = await start(harness, slide["id"], harness.viewer)
    assert viewer.status_code == 403
    anonymous = await harness.client.post(f"/slides/{slide['id']}/analyses")
    assert anonymous.status_code == 401
    unknown = await start(harness, uuid.uuid4())
    assert unknown.status_code == 404
    assert (
        await harness.client.get(f"/analyses/{uuid.uuid4()}", headers=harness.viewer)
    ).status_code == 404
    assert (
        await harness.client.post(f"/analyses/{uuid.uuid4()}/cancel", headers=harness.clinician)
    ).status_code == 404
    assert (
        await harness.client.get("/analyses/not-a-uuid", headers=harness.viewer)
    ).status_code == 422


async def test_a_slide_without_resolution_is_refused(with_inference, tiff_without_mpp):
    slide = await with_inference.slide(tiff_without_mpp, "no-mpp.tiff")
    refused = await start(with_inference, slide["id"])
    assert (
        refused.status_code == 422 and refused.json()["error"]["code"] == "slide_resolution_unknown"
    )


async def test_a_model_without_scale_or_none_active_is_refused(slides, slides_db, tiff_bytes):
    slide = await slides.slide(tiff_bytes, "a.tiff")
    card = {"decision_threshold": 0.5, "input": {"size": [32, 32, 3]}}
    async with stand_in([{"version": "m1", "status": "active"}], {"m1": card}) as client:
        slides.app.state.inference_client = client
        refused = await start(slides, slide["id"])
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "no_model_scale"
    async with stand_in([{"version": "m1", "status": "registered"}], {"m1": card}) as client:
        slides.app.state.inference_client = client
        refused = await start(slides, slide["id"])
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "no_active_model"
    assert await fetch_async(slides_db, "SELECT id FROM analyses") == []
    assert await fetch_async(slides_db, "SELECT id FROM procrastinate_jobs") == []


async def test_too_many_active_analyses_of_one_user(slides_db, tmp_path, tiff_bytes, inference):
    from tests.support.slide_service import running_slides

    async with running_slides(slides_db, tmp_path / "s", analysis_max_active_per_user=1) as harness:
        harness.app.state.inference_client = inference
        first = await harness.slide(tiff_bytes, "a.tiff")
        second = await harness.slide(tiff_bytes, "b.tiff", patient_id=str(uuid.uuid4()))
        assert (await start(harness, first["id"])).status_code == 202
        refused = await start(harness, second["id"])
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_analyses"
        other = bearer(mint_token("clinician", str(uuid.uuid4())))
        assert (await start(harness, second["id"], other)).status_code == 202


async def test_an_analysis_behind_its_users_running_one_is_not_counted_as_waiting_long(
    with_inference, slides_db, tiff_bytes
):
    harness = with_inference
    first = await harness.slide(tiff_bytes, "a.tiff")
    second = await harness.slide(tiff_bytes, "b.tiff", patient_id=str(uuid.uuid4()))
    assert (await start(harness, first["id"])).status_code == 202
    assert (await start(harness, second["id"])).status_code == 202
    metrics = QueueMetrics(harness.app.state.database, CollectorRegistry())
    await metrics.refresh()
    assert metrics.depth.labels("todo")._value.get() == 2
    assert metrics.oldest._value.get() > 0  # both could be taken: the first is the oldest
    # A worker takes the first: the second now waits on the user's lock, not on the queue.
    await fetch_async(
        slides_db,
        "UPDATE procrastinate_jobs SET status = 'doing' "
        "WHERE id = (SELECT min(id) FROM procrastinate_jobs)",
    )
    await metrics.refresh()
    assert metrics.depth.labels("doing")._value.get() == 1
    assert metrics.depth.labels("todo")._value.get() == 1
    assert metrics.oldest._value.get() == 0
    # Another user's waiting analysis still counts.
    other = bearer(mint_token("clinician", str(uuid.uuid4())))
    third = await harness.slide(tiff_bytes, "c.tiff", patient_id=str(uuid.uuid4()))
    assert (await start(harness, third["id"], other)).status_code == 202
    await metrics.refresh()
    assert metrics.oldest._value.get() > 0
