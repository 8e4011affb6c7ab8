import time

import httpx
import pytest

from frontend.utils.gateway_client import (
    SESSION_KEY,
    GatewayClient,
    GatewayError,
    Session,
    browser_address,
)


def client_answering(status: int, body: bytes | dict) -> GatewayClient:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/ready"
        assert request.headers["X-Request-ID"]
        if isinstance(body, dict):
            return httpx.Response(status, json=body)
        return httpx.Response(status, content=body)

    return GatewayClient("http://gateway.test", transport=httpx.MockTransport(handler))


def test_ready_gateway():
    status = client_answering(
        200, {"status": "ready", "checks": {"auth": {"status": "up"}}}
    ).system_status()
    assert status.ready is True
    assert status.services == {"auth": {"status": "up"}}


def test_not_ready_gateway_says_which_service_is_down():
    body = {
        "status": "not_ready",
        "checks": {"auth": {"status": "up", "latency_ms": 2.0}, "data": {"status": "down"}},
        "error": {"code": "not_ready", "message": "Not ready: data: down"},
    }
    status = client_answering(503, body).system_status()
    assert status.ready is False
    assert status.message == "Not ready: data: down"
    assert status.services["data"]["status"] == "down"


@pytest.mark.parametrize(
    ("status", "body"),
    [(502, b"<html>Bad gateway</html>"), (500, {"error": {"message": "boom"}}), (200, b"not json")],
)
def test_unexpected_answers_become_readable_errors(status, body):
    with pytest.raises(GatewayError) as caught:
        client_answering(status, body).system_status()
    assert str(status) in caught.value.message


def test_unreachable_gateway_is_a_readable_error():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = GatewayClient("http://gateway.test", transport=httpx.MockTransport(refuse))
    with pytest.raises(GatewayError) as caught:
        client.system_status()
    assert "cannot be reached" in caught.value.message
    assert "gateway.test" not in caught.value.message  # internal addresses go to the log only


def test_error_envelopes_keep_their_message_code_and_request_id():
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": "rate_limited", "message": "Too many.", "request_id": "r-1"}}
        return httpx.Response(429, json=body, headers={"Retry-After": "42"})

    client = GatewayClient("http://gateway.test", transport=httpx.MockTransport(handler))
    with pytest.raises(GatewayError) as caught:
        client.login("a@example.com", "x")
    assert caught.value.message == "Too many. (retry in 42 s)"
    assert (caught.value.code, caught.value.request_id, caught.value.status_code) == (
        "rate_limited",
        "r-1",
        429,
    )


def test_a_non_json_error_gets_a_sentence_for_its_status():
    client = GatewayClient(
        "http://gateway.test",
        transport=httpx.MockTransport(lambda r: httpx.Response(504, content=b"<html>")),
    )
    with pytest.raises(GatewayError) as caught:
        client.login("a@example.com", "x")
    assert caught.value.message == "A service did not answer in time; please try again."


def test_a_rejected_access_token_is_refreshed_once_and_the_call_retried():
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("authorization")))
        if request.url.path == "/api/v1/auth/refresh":
            tokens = {"access_token": "new", "refresh_token": "r2", "expires_in": 900}
            return httpx.Response(200, json=tokens | {"refresh_expires_in": 9000})
        if request.headers["authorization"] == "Bearer old":
            return httpx.Response(401, json={"error": {"code": "x", "message": "expired"}})
        return httpx.Response(200, json=[])

    store: dict = {}
    client = GatewayClient(
        "http://gateway.test", transport=httpx.MockTransport(handler), store=store
    )
    store[SESSION_KEY] = Session("old", "r1", time.time() + 900, time.time() + 9000, {"role": "x"})
    assert client.models() == []
    assert [path for path, _ in seen] == [
        "/api/v1/models",
        "/api/v1/auth/refresh",
        "/api/v1/models",
    ]
    assert seen[-1][1] == "Bearer new"
    assert store[SESSION_KEY].refresh_token == "r2" and store[SESSION_KEY].user == {"role": "x"}


def test_the_browsers_address_is_passed_on_for_per_address_limits():
    addresses = []

    def handler(request: httpx.Request) -> httpx.Response:
        addresses.append(request.headers.get("x-forwarded-for"))
        return httpx.Response(200, json={"status": "ready", "checks": {}})

    GatewayClient(
        "http://gateway.test", transport=httpx.MockTransport(handler), client_address="203.0.113.9"
    ).system_status()
    GatewayClient("http://gateway.test", transport=httpx.MockTransport(handler)).system_status()
    assert addresses == ["203.0.113.9", None]


def test_signing_out_with_the_gateway_down_still_ends_the_local_session():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    store = {SESSION_KEY: Session("a", "r", time.time() + 900, time.time() + 9000, {})}
    GatewayClient(
        "http://gateway.test", transport=httpx.MockTransport(refuse), store=store
    ).logout()
    assert store == {}


def test_an_access_token_still_valid_is_used_when_auth_cannot_refresh_it():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/auth/refresh":
            error = {"code": "service_unavailable", "message": "auth is unavailable"}
            return httpx.Response(503, json={"error": error})
        assert request.headers["authorization"] == "Bearer still-good"
        return httpx.Response(200, json=[])

    store = {SESSION_KEY: Session("still-good", "r", time.time() + 10, time.time() + 9000, {})}
    client = GatewayClient(
        "http://gateway.test", transport=httpx.MockTransport(handler), store=store
    )
    assert client.models() == []  # inside the refresh margin, but not yet expired
    store[SESSION_KEY].access_expires_at = time.time() - 1
    with pytest.raises(GatewayError) as caught:
        client.models()
    assert caught.value.status_code == 503 and SESSION_KEY in store


def test_a_successful_answer_that_is_not_json_is_a_readable_error():
    client = GatewayClient(
        "http://gateway.test",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=b"<html>")),
    )
    with pytest.raises(GatewayError) as caught:
        client.login("a@example.com", "x")
    assert "not JSON" in caught.value.message


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        (None, None, "127.0.0.1", None),  # a browser on this machine: nothing to pass on
        (None, "198.51.100.7", "127.0.0.1", "198.51.100.7"),  # ngrok's agent on this machine
        ("10.0.0.5", "198.51.100.7", "127.0.0.1", "10.0.0.5"),  # an untrusted peer's claim
        ("10.0.0.5", "198.51.100.7", "10.0.0.0/8", "198.51.100.7"),
        ("10.0.0.5", "203.0.113.1, 198.51.100.7, 10.0.0.9", "10.0.0.0/8", "198.51.100.7"),
        ("10.0.0.5", "203.0.113.1, 198.51.100.7", "*", "203.0.113.1"),  # as uvicorn
        ("10.0.0.5", "not-an-address", "10.0.0.0/8", "not-an-address"),
        ("203.0.113.9", None, "127.0.0.1", "203.0.113.9"),
    ],
)
def test_the_browsers_address_is_believed_only_from_trusted_proxies(
    peer, forwarded, trusted, expected
):
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    assert browser_address(peer, headers, trusted) == expected


def test_a_reopened_client_serves_the_same_user_after_the_page_closed_its_own():
    seen: list[tuple[str, str | None, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(
            (
                request.url.path,
                request.headers.get("authorization"),
                request.headers.get("x-forwarded-for"),
            )
        )
        return httpx.Response(200, json={"id": "a1", "status": "running"})

    store: dict = {}
    page_client = GatewayClient(
        "http://gateway.test",
        transport=httpx.MockTransport(handler),
        store=store,
        client_address="203.0.113.9",
    )
    store[SESSION_KEY] = Session("tok", "r1", time.time() + 900, time.time() + 9000, {"role": "x"})
    page_client.close()  # the page's run ended
    with pytest.raises(RuntimeError):
        page_client.analysis("a1")
    live = page_client.reopened()
    assert live.analysis("a1")["status"] == "running"
    assert seen == [("/api/v1/analyses/a1", "Bearer tok", "203.0.113.9")]
    # One session for both: a refresh by either is the other's too.
    assert live.session is store[SESSION_KEY]
    live.close()
