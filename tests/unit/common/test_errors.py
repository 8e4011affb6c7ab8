import json

import pytest
from fastapi.testclient import TestClient

from tests.support.apps import create_plumbing_app


@pytest.fixture
def client():
    with TestClient(create_plumbing_app(), raise_server_exceptions=False) as client:
        yield client


def assert_envelope(response, status: int, code: str, request_id: str) -> dict:
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == request_id
    assert response.headers["X-Request-ID"] == request_id
    assert error["message"]
    return error


def test_unknown_route_gives_not_found_envelope_with_request_id(client):
    response = client.get("/no/such/route", headers={"X-Request-ID": "req-404"})
    error = assert_envelope(response, 404, "not_found", "req-404")
    assert "/no/such/route" in error["message"]


def test_wrong_method_gives_method_not_allowed_envelope(client):
    response = client.delete("/measurements", headers={"X-Request-ID": "req-405"})
    assert_envelope(response, 405, "method_not_allowed", "req-405")


def test_validation_error_names_the_field_without_echoing_input(client):
    response = client.post(
        "/measurements",
        json={"name": "", "value": -1, "password": "hunter2"},
        headers={"X-Request-ID": "req-422"},
    )
    error = assert_envelope(response, 422, "validation_error", "req-422")
    locations = {detail["location"] for detail in error["details"]}
    assert locations == {"body.name", "body.value"}
    assert "hunter2" not in response.text


def test_malformed_json_is_a_client_error_not_a_crash(client):
    response = client.post(
        "/measurements",
        content=b"{not json",
        headers={"Content-Type": "application/json", "X-Request-ID": "req-json"},
    )
    assert_envelope(response, 422, "validation_error", "req-json")


def test_unexpected_exception_gives_500_envelope_without_internals(client):
    response = client.get("/boom", headers={"X-Request-ID": "req-500"})
    error = assert_envelope(response, 500, "internal_error", "req-500")
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert "request id" in error["message"]


def test_unexpected_exception_is_logged_with_request_id(capsys):
    with TestClient(create_plumbing_app(), raise_server_exceptions=False) as client:
        client.get("/boom", headers={"X-Request-ID": "req-logged"})
    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    errors = [
        line for line in lines if line["level"] == "ERROR" and line["logger"] == "common.errors"
    ]
    assert errors and errors[0]["request_id"] == "req-logged"
    assert "secret internal detail" in errors[0]["exc_info"]


def test_service_error_keeps_its_status_code_and_message(client):
    response = client.get("/teapot", headers={"X-Request-ID": "req-409"})
    error = assert_envelope(response, 409, "name_taken", "req-409")
    assert error["message"] == "That name is taken."
