import asyncio

import pytest
from fastapi.testclient import TestClient

from tests.support.apps import create_plumbing_app


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
