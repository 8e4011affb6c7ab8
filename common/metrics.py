"""Prometheus instrumentation: request counts and latencies per route, process metrics, `/metrics`.

Each app gets its own registry (kept on `app.state.metrics_registry`), so several apps can live
in one process (tests) and a service's own metrics are registered next to the HTTP ones.
"""

from fastapi import FastAPI
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_fastapi_instrumentator import Instrumentator


def install_metrics(app: FastAPI, service: str, version: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    Gauge(
        "service_info",
        "Which service and version this process runs",
        ["service", "version"],
        registry=registry,
    ).labels(service=service, version=version).set(1)
    Instrumentator(
        registry=registry,
        should_group_status_codes=False,
        excluded_handlers=["/metrics"],
    ).instrument(app).expose(app, include_in_schema=False)
    app.state.metrics_registry = registry
    return registry
