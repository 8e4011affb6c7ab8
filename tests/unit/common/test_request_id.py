import re

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.support.apps import create_plumbing_app


@pytest.fixture
def client():
    with TestClient(create_plumbing_app()) as client:
        yield client


def test_request_id_from_caller_is_kept(client):
    response = client.get("/health", headers={"X-Request-ID": "caller-id-123"})
    assert response.headers["X-Request-ID"] == "caller-id-123"


def test_request_id_is_created_when_missing(client):
    first = client.get("/health").headers["X-Request-ID"]
    second = client.get("/health").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


@pytest.mark.parametrize("bad", ["has space", "x" * 200, "semi;colon", 'quote"d'])
def test_request_id_that_could_inject_text_is_replaced(client, bad):
    returned = client.get("/health", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
    assert returned != bad
    assert re.fullmatch(r"[0-9a-f]{32}", returned)


def test_request_id_is_passed_on_to_downstream_calls():
    seen: list[str | None] = []

    def downstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Request-ID"))
        return httpx.Response(200, json={"ok": "yes"})

    app = create_plumbing_app(downstream=httpx.MockTransport(downstream))
    with TestClient(app) as client:
        response = client.get("/call-downstream", headers={"X-Request-ID": "passed-on-42"})
    assert response.status_code == 200
    assert seen == ["passed-on-42"]
