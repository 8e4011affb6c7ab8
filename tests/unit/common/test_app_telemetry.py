"""FastAPI's own OpenTelemetry layer stays off in every service app, even when a tracer
provider is configured process-wide (a library may set one): no spans per request."""

import opentelemetry.trace
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.apps import create_plumbing_app


@pytest.fixture
def spans(monkeypatch) -> InMemorySpanExporter:
    """A tracer provider configured for the process, keeping the spans it is given."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(opentelemetry.trace, "get_tracer_provider", lambda: provider)
    return exporter


def test_a_bare_fastapi_app_traces_each_request_once_a_provider_is_configured(spans):
    """The control: what the service apps turn off."""
    app = FastAPI()
    app.get("/ping")(lambda: {"ok": True})
    with TestClient(app) as client:
        assert client.get("/ping").status_code == 200
    assert spans.get_finished_spans()


def test_a_service_app_makes_no_spans(spans):
    with TestClient(create_plumbing_app()) as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
    assert spans.get_finished_spans() == ()
