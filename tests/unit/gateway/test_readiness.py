"""The gateway's /ready aggregates its downstreams' own /ready answers."""

import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from devstack.postgres import free_port
from gateway.main import create_app
from gateway.settings import GatewaySettings


class FakeDownstream:
    """A real HTTP server on loopback whose /ready answer the test chooses."""

    def __init__(self) -> None:
        self.ready = True
        self.seen_request_ids: list[str | None] = []
        app = FastAPI()

        @app.get("/ready")
        async def ready(request: Request) -> JSONResponse:
            self.seen_request_ids.append(request.headers.get("x-request-id"))
            if self.ready:
                return JSONResponse({"status": "ready", "checks": {}})
            message = "Not ready: database: timed out"
            body = {"status": "not_ready", "error": {"code": "not_ready", "message": message}}
            return JSONResponse(body, status_code=503)

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_config=None))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "FakeDownstream":
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def downstreams():
    with FakeDownstream() as auth, FakeDownstream() as inference, FakeDownstream() as data:
        yield {"auth": auth, "inference": inference, "data": data}


def gateway_for(urls: dict[str, str]) -> FastAPI:
    return create_app(
        GatewaySettings(
            auth_url=urls["auth"],
            inference_url=urls["inference"],
            data_url=urls["data"],
            readiness_timeout_s=1.0,
        )
    )


def test_ready_when_every_downstream_is_ready_and_request_id_passed_on(downstreams):
    app = gateway_for({name: d.url for name, d in downstreams.items()})
    with TestClient(app) as client:
        response = client.get("/ready", headers={"X-Request-ID": "gw-ready-1"})
    assert response.status_code == 200
    assert {name: c["status"] for name, c in response.json()["checks"].items()} == {
        "auth": "up",
        "inference": "up",
        "data": "up",
    }
    assert all(d.seen_request_ids == ["gw-ready-1"] for d in downstreams.values())


def test_not_ready_when_a_downstream_says_so_with_its_reason(downstreams):
    downstreams["data"].ready = False
    app = gateway_for({name: d.url for name, d in downstreams.items()})
    with TestClient(app) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["auth"]["status"] == "up"
    assert body["checks"]["data"]["status"] == "down"
    assert "database: timed out" in body["checks"]["data"]["reason"]
    assert body["error"]["message"].startswith("Not ready: data:")


def test_not_ready_when_a_downstream_is_unreachable(downstreams):
    urls = {name: d.url for name, d in downstreams.items()}
    urls["inference"] = f"http://127.0.0.1:{free_port()}"
    with TestClient(gateway_for(urls)) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    inference = response.json()["checks"]["inference"]
    assert inference["status"] == "down"
    assert inference["reason"].startswith("unreachable (")


def test_health_does_not_depend_on_downstreams():
    dead = f"http://127.0.0.1:{free_port()}"
    with TestClient(gateway_for({"auth": dead, "inference": dead, "data": dead})) as client:
        assert client.get("/health").json() == {"status": "ok", "service": "gateway"}
