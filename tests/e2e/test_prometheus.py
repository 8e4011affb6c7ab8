"""Prometheus under `make run`: it scrapes every service of the stack and loads the alert
rules of infra/prometheus."""

import shutil

import pytest
import yaml

from devstack import ROOT
from devstack.launcher import LaunchedStack
from tests.support.launcher import get, wait_for

pytestmark = pytest.mark.timeout(300)

JOBS = {"gateway", "auth", "inference", "data", "slides", "slide-worker"}


@pytest.fixture(autouse=True)
def prometheus_installed():
    """Without it the launcher runs no Prometheus, and every test here would fail obscurely."""
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus not found: install it (Debian: apt-get install prometheus)")


def query(stack: LaunchedStack, promql: str) -> dict[str, float]:
    """Instant query: value by job."""
    response = get(f"{stack.url('prometheus')}/api/v1/query", params={"query": promql})
    if response is None or response.status_code != 200:
        return {}
    return {
        series["metric"].get("job", ""): float(series["value"][1])
        for series in response.json()["data"]["result"]
    }


def test_the_banner_names_prometheus(stack):
    assert f"Prometheus      {stack.url('prometheus')}" in stack.output()
    assert (stack.var_dir / "run" / "prometheus.yml").is_file()
    assert (stack.var_dir / "prometheus").is_dir()


def test_every_service_is_scraped(stack):
    all_up = dict.fromkeys(JOBS, 1.0)
    wait_for(lambda: query(stack, "up") == all_up, 120, f"every job up: {sorted(JOBS)}")


def test_requests_to_the_gateway_are_counted(stack):
    for _ in range(3):
        get(f"{stack.url('gateway')}/health")
    counted = wait_for(
        lambda: query(stack, 'sum by (job) (http_requests_total{job="gateway"})'),
        120,
        "a scrape of the gateway's request counter",
    )
    assert counted.get("gateway", 0) >= 3, counted


def test_the_alert_rules_are_loaded(stack):
    response = get(f"{stack.url('prometheus')}/api/v1/rules", params={"type": "alert"})
    assert response is not None and response.status_code == 200
    alerts = {
        rule["name"]: rule for group in response.json()["data"]["groups"] for rule in group["rules"]
    }
    # Every rule the file defines (tests/unit/infra checks which those are).
    defined = yaml.safe_load((ROOT / "infra" / "prometheus" / "alerts.yml").read_text())
    assert set(alerts) == {rule["alert"] for group in defined["groups"] for rule in group["rules"]}
    assert all(rule["health"] != "err" for rule in alerts.values()), alerts
