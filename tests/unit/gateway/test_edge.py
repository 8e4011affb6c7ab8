"""The gateway's edge, in process: headers on answers it gives itself and on the docs."""

from fastapi.testclient import TestClient

from devstack.postgres import free_port
from gateway.main import create_app
from gateway.settings import GatewaySettings


def gateway(**settings) -> TestClient:
    dead = f"http://127.0.0.1:{free_port()}"
    return TestClient(
        create_app(GatewaySettings(auth_url=dead, inference_url=dead, data_url=dead, **settings))
    )


def test_the_docs_may_load_their_scripts_but_api_answers_may_load_nothing():
    with gateway() as client:
        docs = client.get("/docs")
        api = client.get("/openapi.json")
    assert docs.status_code == 200
    assert "https://cdn.jsdelivr.net" in docs.headers["content-security-policy"]
    assert api.headers["content-security-policy"].startswith("default-src 'none'")
    assert "cdn.jsdelivr.net" not in api.headers["content-security-policy"]


def test_no_cross_origin_access_unless_configured():
    with gateway() as client:
        answer = client.get("/health", headers={"Origin": "https://clinic.example"})
    assert "access-control-allow-origin" not in answer.headers


def test_a_json_body_over_the_small_limit_is_refused_with_the_request_id():
    with gateway(max_body_bytes=1024) as client:
        answer = client.post(
            "/api/v1/auth/refresh",
            content=b'{"refresh_token": "' + b"x" * 2000 + b'"}',
            headers={"Content-Type": "application/json", "X-Request-ID": "edge-413"},
        )
    assert answer.status_code == 413
    assert answer.json()["error"] == {
        "code": "payload_too_large",
        "message": "The request body is larger than 1 KB.",
        "request_id": "edge-413",
    }
    assert answer.headers["x-request-id"] == "edge-413"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_a_downstream_that_is_down_is_named_in_a_503():
    with gateway(retry_attempts=1) as client:
        answer = client.post(
            "/api/v1/auth/token", data={"username": "a@example.com", "password": "secret"}
        )
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "service_unavailable"
    assert "auth service" in answer.json()["error"]["message"]


def login_statuses(client: TestClient, addresses: list[str]) -> list[int]:
    return [
        client.post(
            "/api/v1/auth/token",
            data={"username": "a@example.com", "password": "secret"},
            headers={"X-Forwarded-For": address},
        ).status_code
        for address in addresses
    ]


def test_a_trusted_proxy_names_the_client_for_the_login_limit():
    with gateway(rate_limit_login="2/minute", forwarded_allow_ips="*", retry_attempts=1) as c:
        # Three clients behind the proxy, one attempt each: nobody is over the limit
        # (503: the auth service of this test is down).
        assert login_statuses(c, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) == [503, 503, 503]
        assert login_statuses(c, ["10.0.0.1", "10.0.0.1"]) == [503, 429]


def test_x_forwarded_for_from_an_untrusted_caller_is_ignored():
    with gateway(
        rate_limit_login="2/minute", forwarded_allow_ips="10.9.9.9", retry_attempts=1
    ) as c:
        # Rotating the header does not buy more attempts: the caller's own address counts.
        assert login_statuses(c, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) == [503, 503, 429]
