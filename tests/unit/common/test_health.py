import asyncio
import json

import httpx
import pytest
from fastapi.testclient import TestClient

from common.health import ReadinessCache
from tests.support.apps import create_plumbing_app
from tests.support.waiting import HeldCheck, until

# What a driver's exception may carry: an internal address and a secret.
LEAKY = "could not connect to postgresql://svc:hunter2@10.0.3.7:5432/auth"


def log_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture
def app():
    return create_plumbing_app()


def test_health_answers_without_checking_dependencies(app):
    async def broken() -> None:
        raise ConnectionRefusedError("nope")

    app.state.readiness_checks["database"] = broken
    with TestClient(app) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "plumbing"}


def test_ready_with_passing_checks(app):
    async def fine() -> str:
        return "3 connections"

    app.state.readiness_checks["database"] = fine
    with TestClient(app) as client:
        response = client.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["status"] == "up"
    assert body["checks"]["database"]["detail"] == "3 connections"


def test_ready_is_503_naming_the_failed_check_and_why(app):
    async def fine() -> None:
        return None

    async def broken() -> None:
        raise ConnectionRefusedError("connection refused")

    app.state.readiness_checks.update(cache=fine, database=broken)
    with TestClient(app) as client:
        response = client.get("/ready", headers={"X-Request-ID": "ready-1"})
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["cache"]["status"] == "up"
    assert body["checks"]["database"] == {
        "status": "down",
        "reason": "ConnectionRefusedError: connection refused",
    }
    assert body["error"]["code"] == "not_ready"
    assert "database" in body["error"]["message"]
    assert body["error"]["request_id"] == "ready-1"


def test_a_hanging_check_times_out_instead_of_hanging_ready(app):
    async def hangs() -> None:
        await asyncio.sleep(30)

    app.state.readiness_checks["slow"] = hangs
    app.state.readiness_timeout_s = 0.2
    with TestClient(app) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["slow"] == {"status": "down", "reason": "timed out"}


def test_metrics_expose_request_counts_per_route(app):
    with TestClient(app) as client:
        client.get("/health")
        client.get("/health")
        text = client.get("/metrics").text
    assert 'http_requests_total{handler="/health",method="GET",status="200"} 2.0' in text
    assert 'service_info{service="plumbing",version=' in text
    assert "process_resident_memory_bytes" in text


def test_a_failed_check_is_logged_with_its_reason_and_request_id(capsys):
    app = create_plumbing_app()  # after capsys, so its log goes where capsys reads

    async def broken() -> None:
        raise ConnectionRefusedError(LEAKY)

    app.state.readiness_checks["database"] = broken
    with TestClient(app) as client:
        client.get("/ready", headers={"X-Request-ID": "ready-log-1"})
    [warning] = [line for line in log_lines(capsys.readouterr().out) if line["level"] == "WARNING"]
    assert warning["check"] == "database"
    assert LEAKY in warning["reason"]
    assert warning["request_id"] == "ready-log-1"


def test_public_ready_names_checks_and_status_without_reasons(capsys):
    app = create_plumbing_app()  # after capsys, so its log goes where capsys reads

    async def fine() -> str:
        return "pool at 10.0.3.7"

    async def broken() -> None:
        raise ConnectionRefusedError(LEAKY)

    app.state.readiness_public = True
    app.state.readiness_checks.update(cache=fine, database=broken)
    with TestClient(app) as client:
        response = client.get("/ready", headers={"X-Request-ID": "ready-pub-1"})
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"] == {"status": "down"}
    assert set(body["checks"]["cache"]) == {"status", "latency_ms"}
    assert body["error"] == {
        "code": "not_ready",
        "message": "Not ready: database: down",
        "request_id": "ready-pub-1",
    }
    for leaked in ("10.0.3.7", "hunter2", "ConnectionRefusedError", "postgresql://"):
        assert leaked not in response.text
    logged = [line for line in log_lines(capsys.readouterr().out) if line["level"] == "WARNING"]
    assert [(line["check"], line["request_id"]) for line in logged] == [("database", "ready-pub-1")]
    assert LEAKY in logged[0]["message"]


def test_public_ready_when_every_check_passes(app):
    async def fine() -> str:
        return "3 connections"

    app.state.readiness_public = True
    app.state.readiness_checks["database"] = fine
    with TestClient(app) as client:
        response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"
    assert set(response.json()["checks"]["database"]) == {"status", "latency_ms"}


async def test_concurrent_ready_calls_share_one_run_which_is_reused_for_the_interval(app):
    check = HeldCheck()
    now = [100.0]
    cache = app.state.readiness_cache = ReadinessCache(1.5, clock=lambda: now[0])
    check.count_arrivals(cache)
    app.state.readiness_checks["database"] = check
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        calls = [asyncio.create_task(client.get("/ready")) for _ in range(50)]
        await until(lambda: check.arrived == 50, "50 calls at the readiness cache")
        check.release.set()
        answers = await asyncio.gather(*calls)
        assert {answer.status_code for answer in answers} == {200}
        assert check.runs == 1

        now[0] += 1.4  # still within the interval
        assert (await client.get("/ready")).status_code == 200
        assert check.runs == 1

        now[0] += 0.2  # past it
        assert (await client.get("/ready")).status_code == 200
        assert check.runs == 2


async def test_a_caller_hanging_up_does_not_cancel_the_shared_run():
    runs = 0
    release = asyncio.Event()

    async def run() -> dict:
        nonlocal runs
        runs += 1
        await release.wait()
        return {"database": {"status": "up"}}

    cache = ReadinessCache(0.0)
    first = asyncio.create_task(cache.get(run))
    second = asyncio.create_task(cache.get(run))
    await until(lambda: runs == 1, "the shared run to start")
    first.cancel()
    release.set()
    assert await second == {"database": {"status": "up"}}
    assert runs == 1
    # Without an interval the next caller runs the checks again.
    assert await cache.get(run) == {"database": {"status": "up"}}
    assert runs == 2
