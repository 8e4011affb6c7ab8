"""The gateway's /ready aggregates its downstreams' own /ready answers; it is public, so it
says which service is up or down and the reasons go to the log."""

import asyncio
import json
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from devstack.postgres import free_port
from gateway.main import create_app
from gateway.settings import GatewaySettings
from tests.support.waiting import HeldCheck, until


class FakeDownstream:
    """A real HTTP server on loopback whose /ready answer the test chooses."""

    def __init__(self) -> None:
        self.ready = True
        self.not_ready_message = "Not ready: database: timed out"
        self.seen_request_ids: list[str | None] = []
        app = FastAPI()

        @app.get("/ready")
        async def ready(request: Request) -> JSONResponse:
            self.seen_request_ids.append(request.headers.get("x-request-id"))
            if self.ready:
                return JSONResponse({"status": "ready", "checks": {}})
            message = self.not_ready_message
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
    with (
        FakeDownstream() as auth,
        FakeDownstream() as inference,
        FakeDownstream() as data,
        FakeDownstream() as slides,
    ):
        yield {"auth": auth, "inference": inference, "data": data, "slides": slides}


def gateway_for(urls: dict[str, str], **settings: float) -> FastAPI:
    return create_app(
        GatewaySettings(
            auth_url=urls["auth"],
            inference_url=urls["inference"],
            data_url=urls["data"],
            slide_url=urls.get("slides", urls["data"]),
            readiness_timeout_s=1.0,
            **settings,
        )
    )


def warnings_logged(text: str) -> list[dict]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line["level"] == "WARNING"]


def test_ready_when_every_downstream_is_ready_and_request_id_passed_on(downstreams):
    app = gateway_for({name: d.url for name, d in downstreams.items()})
    with TestClient(app) as client:
        response = client.get("/ready", headers={"X-Request-ID": "gw-ready-1"})
    assert response.status_code == 200
    assert {name: c["status"] for name, c in response.json()["checks"].items()} == {
        "auth": "up",
        "inference": "up",
        "data": "up",
        "slides": "up",
    }
    assert all(d.seen_request_ids == ["gw-ready-1"] for d in downstreams.values())


def test_not_ready_when_a_downstream_says_so_its_reason_only_in_the_log(downstreams, capsys):
    downstreams["data"].ready = False
    app = gateway_for({name: d.url for name, d in downstreams.items()})
    with TestClient(app) as client:
        response = client.get("/ready", headers={"X-Request-ID": "gw-ready-2"})
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["auth"]["status"] == "up"
    assert body["checks"]["data"]["status"] == "down"
    assert "reason" not in body["checks"]["data"]
    assert "database: timed out" not in response.text
    assert body["error"]["message"].startswith("Not ready: data:")
    [logged] = warnings_logged(capsys.readouterr().out)
    assert (logged["check"], logged["request_id"]) == ("data", "gw-ready-2")
    assert "database: timed out" in logged["reason"]


def test_not_ready_when_a_downstream_is_unreachable(downstreams, capsys):
    urls = {name: d.url for name, d in downstreams.items()}
    urls["inference"] = f"http://127.0.0.1:{free_port()}"
    with TestClient(gateway_for(urls)) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    inference = response.json()["checks"]["inference"]
    assert inference == {"status": "down"}
    assert "unreachable" not in response.text
    [logged] = warnings_logged(capsys.readouterr().out)
    assert logged["check"] == "inference"
    assert logged["reason"].startswith("unreachable (")


def test_a_downstreams_addresses_and_secrets_stay_out_of_the_public_answer(downstreams, capsys):
    leaky = "Not ready: database: connection to 10.0.3.7:5432 failed for svc:hunter2"
    downstreams["auth"].ready = False
    downstreams["auth"].not_ready_message = leaky
    app = gateway_for({name: d.url for name, d in downstreams.items()})
    with TestClient(app) as client:
        response = client.get("/ready", headers={"X-Request-ID": "gw-ready-3"})
    assert response.status_code == 503
    body = response.json()
    latency = {name: check.get("latency_ms") for name, check in body["checks"].items()}
    assert body == {
        "service": "gateway",
        "status": "not_ready",
        "checks": {
            "auth": {"status": "down"},
            "inference": {"status": "up", "latency_ms": latency["inference"]},
            "data": {"status": "up", "latency_ms": latency["data"]},
            "slides": {"status": "up", "latency_ms": latency["slides"]},
        },
        "error": {
            "code": "not_ready",
            "message": "Not ready: auth: down",
            "request_id": "gw-ready-3",
        },
    }
    for leaked in ("10.0.3.7", "hunter2", "database", "127.0.0.1"):
        assert leaked not in response.text
    [logged] = warnings_logged(capsys.readouterr().out)
    assert (logged["check"], logged["request_id"]) == ("auth", "gw-ready-3")
    assert "10.0.3.7:5432" in logged["reason"] and "hunter2" in logged["message"]


async def test_a_flood_of_ready_calls_asks_each_downstream_once_per_interval(downstreams):
    app = gateway_for({name: d.url for name, d in downstreams.items()}, readiness_cache_s=1.0)
    now = [1000.0]
    app.state.readiness_cache.clock = lambda: now[0]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        answers = await asyncio.gather(*(client.get("/ready") for _ in range(50)))
        assert {answer.status_code for answer in answers} == {200}
        assert [len(d.seen_request_ids) for d in downstreams.values()] == [1, 1, 1, 1]

        now[0] += 0.9
        assert (await client.get("/ready")).status_code == 200
        assert [len(d.seen_request_ids) for d in downstreams.values()] == [1, 1, 1, 1]

        now[0] += 0.2
        downstreams["data"].ready = False
        assert (await client.get("/ready")).status_code == 503
        assert [len(d.seen_request_ids) for d in downstreams.values()] == [2, 2, 2, 2]
    await app.state.downstreams.close()


async def test_concurrent_callers_share_the_check_that_is_under_way():
    dead = f"http://127.0.0.1:{free_port()}"
    app = gateway_for({"auth": dead, "inference": dead, "data": dead})
    check = HeldCheck()
    app.state.readiness_checks.clear()
    app.state.readiness_checks["auth"] = check
    check.count_arrivals(app.state.readiness_cache)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        calls = [asyncio.create_task(client.get("/ready")) for _ in range(50)]
        await until(
            lambda: check.arrived == 50 and check.runs == 1, "50 calls sharing one readiness run"
        )
        check.release.set()
        answers = await asyncio.gather(*calls)
    assert {answer.json()["checks"]["auth"]["status"] for answer in answers} == {"up"}
    assert check.runs == 1


def test_health_does_not_depend_on_downstreams():
    dead = f"http://127.0.0.1:{free_port()}"
    with TestClient(gateway_for({"auth": dead, "inference": dead, "data": dead})) as client:
        assert client.get("/health").json() == {"status": "ok", "service": "gateway"}
