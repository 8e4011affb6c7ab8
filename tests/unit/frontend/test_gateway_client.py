import httpx
import pytest

from frontend.utils.gateway_client import GatewayClient, GatewayError


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


def test_not_ready_gateway_carries_its_reason():
    body = {
        "status": "not_ready",
        "checks": {"auth": {"status": "up"}, "data": {"status": "down", "reason": "unreachable"}},
        "error": {"code": "not_ready", "message": "Not ready: data: unreachable"},
    }
    status = client_answering(503, body).system_status()
    assert status.ready is False
    assert status.message == "Not ready: data: unreachable"
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
    assert "http://gateway.test" in caught.value.message
