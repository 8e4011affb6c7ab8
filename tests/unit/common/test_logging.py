import json
import logging

from fastapi.testclient import TestClient

from common.logging import configure_logging
from tests.support.apps import create_plumbing_app


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_each_record_is_one_json_object_with_the_required_fields(capsys):
    configure_logging("svc-under-test", "INFO")
    logging.getLogger("example").info("hello %s", "world", extra={"items": 3})
    [line] = json_lines(capsys.readouterr().out)
    assert line["message"] == "hello world"
    assert line["level"] == "INFO"
    assert line["service"] == "svc-under-test"
    assert line["request_id"] == "-"
    assert line["items"] == 3
    assert line["time"].endswith("+00:00")


def test_configuring_twice_does_not_duplicate_lines(capsys):
    configure_logging("svc", "INFO")
    configure_logging("svc", "INFO")
    logging.getLogger("example").warning("once")
    assert len(json_lines(capsys.readouterr().out)) == 1


def test_level_filters_records(capsys):
    configure_logging("svc", "WARNING")
    logging.getLogger("example").info("hidden")
    assert capsys.readouterr().out == ""


def test_access_line_carries_request_id_and_status(capsys):
    with TestClient(create_plumbing_app()) as client:
        client.get("/ready", headers={"X-Request-ID": "log-me-7"})
    access = [line for line in json_lines(capsys.readouterr().out) if line["logger"] == "access"]
    assert access[-1]["request_id"] == "log-me-7"
    assert access[-1]["path"] == "/ready"
    assert access[-1]["status"] == 200
    assert access[-1]["service"] == "plumbing"
