"""Prometheus config and alert rules, the Grafana provisioning and dashboard: valid, and
asking only for metrics the services really expose."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from auth_service.tokens.keys import ensure_key_file
from devstack import ROOT, prometheus
from devstack.stack import build_stack
from gateway.main import create_app as create_gateway_app
from gateway.settings import GatewaySettings
from tests.support.services import auth_app, data_app, inference_app

PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
GRAFANA_DIR = ROOT / "infra" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "cancer-detection.json"
JOBS = {"gateway", "auth", "inference", "data"}
# Series Prometheus makes itself for each target, beside what the target exposes.
SYNTHETIC = {"up"}
UNUSED_DATABASE = "postgresql://postgres@127.0.0.1:1/unused"  # the apps' lifespans never run

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
PROMQL_WORDS |= {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Prometheus (Debian: apt-get install prometheus)")
    return path


def check(*args: str | Path) -> None:
    result = subprocess.run(
        [promtool(), "check", *map(str, args)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label
    matchers, ranges, grouping clauses, Grafana variables and function calls are removed."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)(?![\w:]*\s*\()", expr)
    return {name for name in names if name.lower() not in PROMQL_WORDS}


def rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_expressions() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def _sample_names(registry) -> set[str]:
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
    }
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


@pytest.fixture(scope="module")
def exposed(tmp_path_factory) -> set[str]:
    """Every series name the four services can expose, from their apps built in process."""
    folder = tmp_path_factory.mktemp("services")
    ensure_key_file(folder / "keys")
    apps = [
        create_gateway_app(GatewaySettings(_env_file=None)),
        auth_app(UNUSED_DATABASE, keys_dir=folder / "keys"),
        data_app(UNUSED_DATABASE, storage_dir=folder / "images"),
        inference_app(UNUSED_DATABASE, models_dir=folder / "models"),
    ]
    names = set()
    for app in apps:
        # The first request builds the middleware that registers the HTTP metrics.
        assert TestClient(app).get("/metrics").status_code == 200
        names |= _sample_names(app.state.metrics_registry)
    return names


def test_metric_names_are_read_from_promql():
    expr = (
        'histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{status=~"5.."}[5m])))'
        " / on (job) group_left sum without (x) (increase(b_total[$__rate_interval])) > 0.05"
        " and up offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "up"}


def test_prometheus_config_and_its_rule_files_are_valid():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]  # beside it, wherever the folder is mounted
    assert {job["job_name"] for job in config["scrape_configs"]} == JOBS
    check("config", PROMETHEUS_DIR / "prometheus.yml")


def test_alert_rules_are_valid_and_cover_downtime_errors_latency_and_downstreams():
    check("rules", PROMETHEUS_DIR / "alerts.yml")
    alerts = {rule["alert"]: rule for rule in rules()}
    assert set(alerts) == {"ServiceDown", "HighErrorRate", "HighLatency", "GatewayDownstreamErrors"}
    assert alerts["ServiceDown"]["for"] == "1m"
    assert 'status=~"5.."' in alerts["HighErrorRate"]["expr"]


def test_the_dev_stack_config_scrapes_local_ports_with_the_same_jobs_and_rules(tmp_path):
    stack = build_stack({"GATEWAY_PORT": "18004"}, "postgresql://x@127.0.0.1/x", tmp_path)
    config = prometheus.local_config(stack)
    targets = {
        job["job_name"]: [t for group in job["static_configs"] for t in group["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {
        "gateway": ["127.0.0.1:18004"],
        "auth": ["127.0.0.1:8000"],
        "inference": ["127.0.0.1:8001"],
        "data": ["127.0.0.1:8002"],
    }
    assert config["rule_files"] == [str(PROMETHEUS_DIR / "alerts.yml")]
    check("config", prometheus.write_config(stack, tmp_path))


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard_folder():
    provisioning = GRAFANA_DIR / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert (source["type"], source["url"], source["uid"]) == (
        "prometheus",
        "http://prometheus:9090",
        "prometheus",
    )
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    # Where compose mounts infra/grafana/dashboards.
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_the_dashboard_has_a_panel_for_each_view_on_the_provisioned_datasource():
    board = dashboard()
    assert board["uid"] == "cancer-detection"
    panels = {panel["title"]: panel for panel in board["panels"]}
    wanted = {
        "Requests per second": "http_requests_total",
        "Error rate (5xx)": "http_requests_total",
        "Latency p50 / p95": "http_request_duration_highr_seconds_bucket",
        "Predictions by label": "inference_predictions_total",
        "Inference batch size": "inference_batch_size_bucket",
        "Assistant answers": "gateway_assistant_answers_total",
    }
    for title, metric in wanted.items():
        assert title in panels, title
        used = set().union(*(metric_names(t["expr"]) for t in panels[title]["targets"]))
        assert metric in used, (title, used)
    assert {"0.5", "0.95"} <= {
        m for t in panels["Latency p50 / p95"]["targets"] for m in re.findall(r"0\.\d+", t["expr"])
    }
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]


def test_rules_and_dashboard_ask_only_for_metrics_the_services_expose(exposed):
    expressions = [rule["expr"] for rule in rules()] + dashboard_expressions()
    used = set().union(*map(metric_names, expressions))
    assert {"inference_predictions_total", "gateway_downstream_errors_total"} <= used
    assert used - exposed - SYNTHETIC == set()
