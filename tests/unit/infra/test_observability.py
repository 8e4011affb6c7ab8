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
JOBS = {"gateway", "auth", "inference", "data", "slides", "slide-worker"}
# The slide-analysis workers' own /metrics (python -m slide_service.worker, port 9103): metric
# families and the series Prometheus stores of them. No app serves them, so the worker's
# source is checked for each family below.
WORKER_PORT = 9103
WORKER_FAMILIES = {
    "slide_analysis_jobs": "counter",
    "slide_analysis_job_seconds": "histogram",
    "slide_analysis_tiles": "counter",
    "slide_analysis_tiles_per_second": "gauge",
}
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


def test_every_slide_worker_replica_is_scraped_through_the_compose_services_dns_name():
    """`docker compose up --scale slide-worker=N`: the replicas share the service's name, and
    each of its A records is a target of its own, on the workers' metrics port."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker = jobs["slide-worker"]
    assert "static_configs" not in worker  # one fixed target would be one replica
    (lookup,) = worker["dns_sd_configs"]
    assert lookup["type"] == "A" and lookup["port"] == WORKER_PORT
    assert lookup["names"] == ["slide-worker"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert "slide-worker" in compose and "container_name" not in compose["slide-worker"]
    assert compose["slide-worker"]["command"] == ["python", "-m", "slide_service.worker"]
    # The healthcheck asks the same port.
    assert f"127.0.0.1:{WORKER_PORT}/metrics" in " ".join(
        compose["slide-worker"]["healthcheck"]["test"]
    )


def test_the_workers_metrics_port_is_the_settings_default():
    from slide_service.settings import SlideSettings

    assert SlideSettings.model_fields["worker_metrics_port"].default == WORKER_PORT


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
        "SlideAnalysisQueueStuck",
        "SlideAnalysisJobsFailing",
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
        # The workers' DNS job (every replica in compose) becomes the stack's one worker.
        "slide-worker": ["127.0.0.1:9103"],
    }
    assert config["rule_files"] == [str(PROMETHEUS_DIR / "alerts.yml")]
    check("config", prometheus.write_config(stack, tmp_path))


def test_the_dev_stack_config_turns_a_dns_job_into_the_stacks_process_or_drops_it(tmp_path):
    stack = build_stack({}, "postgresql://x@127.0.0.1/x", tmp_path)
    source = tmp_path / "prometheus.yml"
    source.write_text(
        yaml.safe_dump(
            {
                "scrape_configs": [
                    {"job_name": "slides", "dns_sd_configs": [{"names": ["slides"], "port": 1}]},
                    {"job_name": "gone", "dns_sd_configs": [{"names": ["nowhere"], "port": 1}]},
                ]
            }
        )
    )
    jobs = prometheus.local_config(stack, source)["scrape_configs"]
    assert jobs == [{"job_name": "slides", "static_configs": [{"targets": ["127.0.0.1:8003"]}]}]


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
        "Slide analysis queue": "slide_analysis_queue_depth",
        "Slide analysis duration p50 / p95": "slide_analysis_job_seconds_bucket",
        "Slide-analysis workers": "slide_analysis_workers",
        "Slide analysis tiles per second": "slide_analysis_tiles_total",
        "Slide analysis outcomes": "slide_analysis_jobs_total",
        "Oldest queued slide analysis": "slide_analysis_oldest_queued_seconds",
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
    (queue,) = panels["Slide analysis queue"]["targets"]
    assert "by (status)" in queue["expr"] and queue["legendFormat"] == "{{status}}"
    assert {"0.5", "0.95"} <= {
        m
        for t in panels["Slide analysis duration p50 / p95"]["targets"]
        for m in re.findall(r"0\.\d+", t["expr"])
    }
    workers = " ".join(t["expr"] for t in panels["Slide-analysis workers"]["targets"])
    assert 'up{job="slide-worker"}' in workers  # the scraped replicas, beside the heartbeats
    (outcomes,) = panels["Slide analysis outcomes"]["targets"]
    assert "by (outcome)" in outcomes["expr"]
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
    assert {"slide_analysis_queue_depth", "slide_analysis_jobs_total"} <= used
    assert used - exposed - worker_series() - SYNTHETIC == set()


def worker_series() -> set[str]:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {name + s for name, kind in WORKER_FAMILIES.items() for s in suffixes[kind]}


def test_the_worker_defines_the_metric_families_the_rules_and_dashboard_read():
    """The worker's metrics are served by its own process, not an app built here: each family
    must be named in its source (prometheus_client adds `_total` to a counter itself)."""
    source = "\n".join(path.read_text() for path in sorted((ROOT / "slide_service").rglob("*.py")))
    for family in WORKER_FAMILIES:
        assert re.search(rf"[\"']{family}(_total)?[\"']", source), family


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


# -- A stuck slide-analysis queue, with promtool's rule tests over made-up queue gauges --------

QUEUE_ALERT = "SlideAnalysisQueueStuck"
# Every slide service replica reads the same numbers from the database and reports them.
SLIDE_INSTANCES = ("slides-a:8003", "slides-b:8003")
QUEUE_STUCK = {
    "exp_labels": {"severity": "critical"},
    "exp_annotations": {
        "summary": "Slide analyses are waiting and no worker takes them",
        "description": description_of(QUEUE_ALERT),
    },
}


def gauge_values(phases: list[tuple[int, float, float]]) -> str:
    """A gauge sampled each minute: for each phase, its minutes, its first value and how much
    it grows each minute."""
    values = []
    for minutes, start, step in phases:
        values += [start + step * minute for minute in range(minutes)]
    return " ".join(f"{v:g}" for v in values)


def queue_series(todo, doing, workers, oldest) -> list[dict[str, str]]:
    gauges = {
        'slide_analysis_queue_depth{status="todo"': todo,
        'slide_analysis_queue_depth{status="doing"': doing,
        "slide_analysis_workers{": workers,
        "slide_analysis_oldest_queued_seconds{": oldest,
    }
    return [
        {
            "series": f"{prefix}{',' if prefix.endswith(chr(34)) else ''}"
            f'job="slides",instance="{instance}"}}',
            "values": gauge_values(phases),
        }
        for prefix, phases in gauges.items()
        for instance in SLIDE_INSTANCES
    ]


def steady(value: float, minutes: int = 31) -> list[tuple[int, float, float]]:
    return [(minutes, value, 0)]


@pytest.mark.parametrize(
    ("todo", "workers", "oldest"),
    [
        # Analyses waiting, no worker alive for 30 minutes (the oldest still young: new ones).
        (steady(3), steady(0), steady(120)),
        # Workers alive, but the oldest waiting analysis ages past 15 minutes and stays.
        (steady(2), steady(2), [(31, 0, 60)]),
    ],
    ids=["no-worker", "oldest-too-old"],
)
def test_the_queue_alert_fires_when_the_queue_does_not_move(tmp_path, todo, workers, oldest):
    series = queue_series(todo, steady(1), workers, oldest)
    result = run_rule_tests(rule_test(series, 30, QUEUE_ALERT, [QUEUE_STUCK]), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("todo", "workers", "oldest"),
    [
        # Busy workers, a queue that moves: nothing waits long.
        (steady(3), steady(2), steady(300)),
        # Idle: nothing queued, no worker alive.
        (steady(0), steady(0), steady(0)),
        # Workers gone for 8 minutes only (a rollout), fewer than the 10 the alert waits.
        (steady(2), [(20, 1, 0), (8, 0, 0), (3, 1, 0)], steady(120)),
        # The oldest above 15 minutes for 8 minutes only, then taken.
        (steady(2), steady(1), [(20, 420, 30), (8, 1020, 30), (3, 60, 0)]),
    ],
    ids=["moving", "idle", "brief-outage", "brief-wait"],
)
def test_the_queue_alert_stays_quiet_while_the_queue_moves(tmp_path, todo, workers, oldest):
    series = queue_series(todo, steady(1), workers, oldest)
    result = run_rule_tests(rule_test(series, 30, QUEUE_ALERT, []), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_queue_rule_tests_can_fail(tmp_path):
    stuck = queue_series(steady(3), steady(1), steady(0), steady(120))
    assert run_rule_tests(rule_test(stuck, 30, QUEUE_ALERT, []), tmp_path).returncode != 0
    moving = queue_series(steady(3), steady(1), steady(2), steady(300))
    assert run_rule_tests(rule_test(moving, 30, QUEUE_ALERT, [QUEUE_STUCK]), tmp_path).returncode


# -- Failing slide analyses, with promtool's rule tests over made-up worker counters ----------

FAILING_ALERT = "SlideAnalysisJobsFailing"
WORKER_INSTANCES = ("10.0.0.5:9103", "10.0.0.6:9103")  # replicas found by DNS
FAILING_MINUTES = 40


def jobs_series(per_minute: dict[str, float]) -> list[dict[str, str]]:
    """`slide_analysis_jobs_total{outcome=...}` of two workers, each ending jobs at half the
    given rate per minute, sampled each minute for FAILING_MINUTES."""
    return [
        {
            "series": "slide_analysis_jobs_total"
            f'{{outcome="{outcome}",job="slide-worker",instance="{instance}"}}',
            "values": f"0+{rate / 2:g}x{FAILING_MINUTES}",
        }
        for outcome, rate in per_minute.items()
        for instance in WORKER_INSTANCES
    ]


def failing(share: str) -> dict:
    return {
        "exp_labels": {"severity": "warning"},
        "exp_annotations": {
            "summary": f"{share} of slide analyses failed in the last 30 minutes",
            "description": description_of(FAILING_ALERT),
        },
    }


def failing_rule_tests(per_minute: dict[str, float], expected: list[dict]) -> dict:
    return rule_test(jobs_series(per_minute), FAILING_MINUTES, FAILING_ALERT, expected)


@pytest.mark.parametrize(
    ("per_minute", "share"),
    [
        # Half of the finished analyses fail: 6 failures in 30 minutes.
        ({"succeeded": 0.2, "failed": 0.2, "cancelled": 0, "retried": 0.4}, "50%"),
        # Cancellations are the users' choice, not finished work: a third of what ran to an
        # end failed, however many were cancelled besides.
        ({"succeeded": 0.4, "failed": 0.2, "cancelled": 2, "retried": 0}, "33.33%"),
    ],
    ids=["half", "cancellations-aside"],
)
def test_the_failing_alert_fires_when_a_quarter_of_the_analyses_fail(tmp_path, per_minute, share):
    result = run_rule_tests(failing_rule_tests(per_minute, [failing(share)]), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "per_minute",
    [
        # A tenth fail: 3 failures in 30 minutes, but among 30 analyses.
        {"succeeded": 0.9, "failed": 0.1, "cancelled": 0, "retried": 0.1},
        # Half fail, but only 2 in 30 minutes: too few to call it failing.
        {"succeeded": 2 / 30, "failed": 2 / 30, "cancelled": 0, "retried": 0},
        # Many attempts retried, every analysis succeeding in the end.
        {"succeeded": 0.5, "failed": 0, "cancelled": 0, "retried": 1},
        # Nothing runs.
        {"succeeded": 0, "failed": 0, "cancelled": 0, "retried": 0},
    ],
    ids=["few-fail", "too-few-failures", "retries-only", "idle"],
)
def test_the_failing_alert_stays_quiet_otherwise(tmp_path, per_minute):
    result = run_rule_tests(failing_rule_tests(per_minute, []), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_failing_rule_tests_can_fail(tmp_path):
    half = {"succeeded": 0.2, "failed": 0.2}
    assert run_rule_tests(failing_rule_tests(half, []), tmp_path).returncode != 0
    few = {"succeeded": 0.9, "failed": 0.1}
    assert run_rule_tests(failing_rule_tests(few, [failing("10%")]), tmp_path).returncode != 0
