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
from prometheus_client import CollectorRegistry

from auth_service.tokens.keys import ensure_key_file
from devstack import ROOT, prometheus
from devstack.stack import build_stack
from gateway.main import create_app as create_gateway_app
from gateway.settings import GatewaySettings
from slide_service.tiles.deepzoom import TileServer
from tests.support.services import auth_app, data_app, inference_app, slide_app

PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
GRAFANA_DIR = ROOT / "infra" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "cancer-detection.json"
JOBS = {"gateway", "auth", "inference", "data", "slides"}
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
    """Every series name the five services can expose, from their apps built in process."""
    folder = tmp_path_factory.mktemp("services")
    ensure_key_file(folder / "keys")
    apps = [
        create_gateway_app(GatewaySettings(_env_file=None)),
        auth_app(UNUSED_DATABASE, keys_dir=folder / "keys"),
        data_app(UNUSED_DATABASE, storage_dir=folder / "images"),
        inference_app(UNUSED_DATABASE, models_dir=folder / "models"),
        slide_app(UNUSED_DATABASE, storage_dir=folder / "slides"),
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
    assert set(alerts) == {
        "ServiceDown",
        "HighErrorRate",
        "HighLatency",
        "GatewayDownstreamErrors",
        "NotAssessableShareJump",
        "SlideTileLatencyHigh",
    }
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
        "slides": ["127.0.0.1:8003"],
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
        "Not-assessable share": "inference_assessments_total",
        "Assessments and reasons": "inference_assessment_reasons_total",
        "Slide tile latency p95": "slide_tile_seconds_bucket",
        "Slide tile cache hit rate": "slide_tile_cache_misses_total",
        "Slide uploads": "http_requests_total",
    }
    for title, metric in wanted.items():
        assert title in panels, title
        used = set().union(*(metric_names(t["expr"]) for t in panels[title]["targets"]))
        assert metric in used, (title, used)
    assert {"0.5", "0.95"} <= {
        m for t in panels["Latency p50 / p95"]["targets"] for m in re.findall(r"0\.\d+", t["expr"])
    }
    (hit_rate,) = panels["Slide tile cache hit rate"]["targets"]
    assert {"slide_tile_cache_hits_total", "slide_tile_cache_misses_total"} <= metric_names(
        hit_rate["expr"]
    )
    (uploads,) = panels["Slide uploads"]["targets"]
    assert 'job="slides"' in uploads["expr"] and 'handler="/slides"' in uploads["expr"]
    assert 'method="POST"' in uploads["expr"]
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
    # Panels do not overlap (Grafana would push one down, out of its place).
    cells = set()
    for panel in board["panels"]:
        box = panel["gridPos"]
        covered = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        assert not cells & covered, panel["title"]
        cells |= covered


def test_rules_and_dashboard_ask_only_for_metrics_the_services_expose(exposed):
    expressions = [rule["expr"] for rule in rules()] + dashboard_expressions()
    used = set().union(*map(metric_names, expressions))
    assert {"inference_predictions_total", "gateway_downstream_errors_total"} <= used
    assert {"inference_assessments_total", "inference_assessment_reasons_total"} <= used
    assert {"slide_tile_seconds_bucket", "slide_tile_cache_hits_total"} <= used
    assert used - exposed - SYNTHETIC == set()


# -- The not-assessable jump, with promtool's rule tests over made-up counter series ----------

JUMP_ALERT = "NotAssessableShareJump"
DAY_MINUTES = 24 * 60


def assessment_series(per_minute: dict[str, tuple[float, float]]) -> list[dict[str, str]]:
    """Counters of `inference_assessments_total` sampled each minute: for each assessment,
    images per minute over the first day, then over the two hours after it."""
    series = []
    for assessment, (day_rate, then_rate) in per_minute.items():
        at_day_end = day_rate * DAY_MINUTES
        series.append(
            {
                "series": "inference_assessments_total"
                f'{{assessment="{assessment}",job="inference",instance="inference:8001"}}',
                "values": f"0+{day_rate}x{DAY_MINUTES} {at_day_end + then_rate}+{then_rate}x120",
            }
        )
    return series


def rule_test(series: list[dict], minutes: int, alert: str, expected: list[dict]) -> dict:
    """A promtool rule test over series sampled each minute: after `minutes`, `alert` fires
    with `expected` (labels and annotations), or not at all when `expected` is empty."""
    return {
        "rule_files": [str(PROMETHEUS_DIR / "alerts.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": f"{minutes}m", "alertname": alert, "exp_alerts": expected},
                ],
            }
        ],
    }


def description_of(alert: str) -> str:
    return next(r for r in rules() if r.get("alert") == alert)["annotations"]["description"]


def jump_rule_tests(per_minute: dict[str, tuple[float, float]], expected: list[dict]) -> dict:
    """70 minutes into the second period."""
    return rule_test(assessment_series(per_minute), DAY_MINUTES + 70, JUMP_ALERT, expected)


def run_rule_tests(tests: dict, folder: Path) -> subprocess.CompletedProcess:
    path = folder / "rule_test.yml"
    path.write_text(yaml.safe_dump(tests))
    return subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )


FIRED = {
    "exp_labels": {"severity": "warning"},
    "exp_annotations": {
        "summary": "50% of images were not assessable in the last hour",
        "description": description_of(JUMP_ALERT),
    },
}


def test_the_not_assessable_alert_fires_when_the_share_jumps(tmp_path):
    # 5 % of 100 images a minute all day, then half of them for the last 70 minutes.
    jump = {"assessable": (95, 50), "not_assessable": (5, 50), "indeterminate": (0, 0)}
    result = run_rule_tests(jump_rule_tests(jump, [FIRED]), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "per_minute",
    [
        # A steady 5 %.
        {"assessable": (95, 95), "not_assessable": (5, 5)},
        # A steady 30 %: above 20 %, but what this site always sends.
        {"assessable": (70, 70), "not_assessable": (30, 30)},
        # Half of 12 images in the hour after a day at 5 %: too few images to call a jump.
        {"assessable": (0.95, 0.1), "not_assessable": (0.05, 0.1)},
        # Every image assessable.
        {"assessable": (100, 100), "not_assessable": (0, 0)},
    ],
    ids=["steady-low", "steady-high", "too-few-images", "none"],
)
def test_the_not_assessable_alert_stays_quiet_without_a_jump(tmp_path, per_minute):
    result = run_rule_tests(jump_rule_tests(per_minute, []), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rule_tests_can_fail(tmp_path):
    """promtool's test fails when the expectation is wrong, both ways: so a passing test above
    is the rule's behaviour, not a test that cannot fail."""
    jump = {"assessable": (95, 50), "not_assessable": (5, 50)}
    assert run_rule_tests(jump_rule_tests(jump, []), tmp_path).returncode != 0
    steady = {"assessable": (95, 95), "not_assessable": (5, 5)}
    assert run_rule_tests(jump_rule_tests(steady, [FIRED]), tmp_path).returncode != 0


# -- Slow slide tiles, with promtool's rule tests over a made-up tile histogram ---------------

TILE_ALERT = "SlideTileLatencyHigh"
# Upper bounds of the made-up buckets; 0.03 and 0.15 s, the alert's limits, are among them.
TILE_BUCKETS = (0.03, 0.1, 0.15, 0.3, float("inf"))
# Most tiles come from the cache: few slow misses must still be seen under many fast hits.
TILES_PER_MINUTE = {"hit": 100, "miss": 5}

Phases = list[tuple[int, float | None]]


def tile_series(phases: Phases, cache: str) -> list[dict[str, str]]:
    """`slide_tile_seconds_bucket{cache=...}` counters sampled each minute: for each phase, its
    minutes and how long each tile took (None: no tiles)."""
    counts = dict.fromkeys(TILE_BUCKETS, 0)
    values: dict[float, list[int]] = {bound: [0] for bound in TILE_BUCKETS}
    for minutes, seconds in phases:
        for _ in range(minutes):
            for bound in TILE_BUCKETS:
                if seconds is not None and seconds <= bound:
                    counts[bound] += TILES_PER_MINUTE[cache]
                values[bound].append(counts[bound])
    return [
        {
            "series": "slide_tile_seconds_bucket"
            f'{{le="{"+Inf" if bound == float("inf") else bound}",cache="{cache}",job="slides",'
            'instance="slides:8003"}',
            "values": " ".join(map(str, values[bound])),
        }
        for bound in TILE_BUCKETS
    ]


def tile_rule_tests(hits: Phases, misses: Phases, expected: list[dict]) -> dict:
    """At the end of the phases (the same length for hits and misses)."""
    minutes = sum(length for length, _ in hits)
    assert minutes == sum(length for length, _ in misses)
    series = tile_series(hits, "hit") + tile_series(misses, "miss")
    return rule_test(series, minutes, TILE_ALERT, expected)


def tiles_slow(cache: str, p95: str) -> dict:
    return {
        "exp_labels": {"severity": "warning", "job": "slides", "cache": cache},
        "exp_annotations": {
            "summary": f"Slide tiles ({cache}): p95 {p95}",
            "description": description_of(TILE_ALERT),
        },
    }


# Every miss in the (0.15, 0.3] bucket: the p95 is interpolated at 95 % of it. Blended with
# the hits at 1 ms, the p95 of all tiles would be under 30 ms.
MISSES_SLOW = tiles_slow("miss", "292.5ms")
# Every hit in the (0.03, 0.1] bucket: far under the misses' limit, above the hits'.
HITS_SLOW = tiles_slow("hit", "96.5ms")


def test_the_tile_latency_alert_fires_when_misses_stay_slow(tmp_path):
    # Hits fast throughout; misses fast for a while, then 0.2 s each for 20 minutes.
    hits, misses = [(50, 0.001)], [(30, 0.1), (20, 0.2)]
    result = run_rule_tests(tile_rule_tests(hits, misses, [MISSES_SLOW]), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tile_latency_alert_fires_when_hits_stay_slow(tmp_path):
    # Misses within their 150 ms; hits fast, then 50 ms each for 20 minutes.
    hits, misses = [(30, 0.001), (20, 0.05)], [(50, 0.1)]
    result = run_rule_tests(tile_rule_tests(hits, misses, [HITS_SLOW]), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tile_latency_alert_fires_for_each_kind_when_both_are_slow(tmp_path):
    hits, misses = [(30, 0.001), (20, 0.05)], [(30, 0.1), (20, 0.2)]
    result = run_rule_tests(tile_rule_tests(hits, misses, [HITS_SLOW, MISSES_SLOW]), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("hits", "misses"),
    [
        # Every tile well under its limit.
        ([(40, 0.001)], [(40, 0.1)]),
        # At the limits, not above them.
        ([(40, 0.03)], [(40, 0.15)]),
        # Slow for 8 minutes only: shorter than the 10 the alert waits.
        ([(30, 0.001), (8, 0.05)], [(30, 0.1), (8, 0.2)]),
        # Misses only, within their limit: no hits is no value, not a breach.
        ([(40, None)], [(40, 0.1)]),
        # No tiles at all.
        ([(40, None)], [(40, None)]),
    ],
    ids=["fast", "at-the-limits", "brief-spike", "no-hits", "idle"],
)
def test_the_tile_latency_alert_stays_quiet_otherwise(tmp_path, hits, misses):
    result = run_rule_tests(tile_rule_tests(hits, misses, []), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tile_rule_tests_can_fail(tmp_path):
    slow_misses = ([(50, 0.001)], [(30, 0.1), (20, 0.2)])
    assert run_rule_tests(tile_rule_tests(*slow_misses, []), tmp_path).returncode != 0
    # The wrong kind named: the alert carries the `cache` label of the slow tiles.
    assert run_rule_tests(tile_rule_tests(*slow_misses, [HITS_SLOW]), tmp_path).returncode != 0
    fast = ([(40, 0.001)], [(40, 0.1)])
    assert run_rule_tests(tile_rule_tests(*fast, [MISSES_SLOW]), tmp_path).returncode != 0
    assert run_rule_tests(tile_rule_tests(*fast, [HITS_SLOW]), tmp_path).returncode != 0


def test_the_services_tile_histogram_has_the_alerts_limit_and_both_targets_as_buckets():
    # Otherwise the alert and the dashboard read the p95 between two far-apart edges.
    registry = CollectorRegistry()
    tiles = TileServer(
        tile_cache_bytes=1024,
        open_slides=1,
        read_threads=1,
        registry=registry,
        max_read_pixels=1_000_000,
    )
    tiles.seconds.labels(cache="hit").observe(0.001)
    bounds = {
        float(sample.labels["le"])
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "slide_tile_seconds_bucket"
    }
    tiles.close()
    assert {0.03, 0.15} <= bounds
    assert {0.03, 0.15} <= set(TILE_BUCKETS)
