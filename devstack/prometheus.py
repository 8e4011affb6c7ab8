"""Prometheus beside the services, when its binary is installed: the scrape jobs and alert
rules of `infra/prometheus/prometheus.yml`, pointed at the stack's own ports."""

import shlex
from pathlib import Path

import yaml

from devstack import ROOT
from devstack.stack import BY_NAME, Stack

SOURCE = ROOT / "infra" / "prometheus" / "prometheus.yml"
# Short, so a freshly started stack shows up within seconds; the load is a few scrapes.
LOCAL_INTERVAL = "2s"


def _local_target(target: str, stack: Stack) -> str:
    host = target.rpartition(":")[0]
    if host not in BY_NAME:
        raise ValueError(f"{SOURCE}: scrape target {target!r} names no component of the stack")
    return f"127.0.0.1:{stack.port(host)}"


def local_config(stack: Stack, source: Path = SOURCE) -> dict:
    config = yaml.safe_load(source.read_text())
    config["global"] = {
        **config.get("global", {}),
        "scrape_interval": LOCAL_INTERVAL,
        "evaluation_interval": LOCAL_INTERVAL,
    }
    # The generated file lives elsewhere: rule paths must no longer depend on where it is.
    config["rule_files"] = [str(source.parent / path) for path in config.get("rule_files", [])]
    jobs = []
    for job in config.get("scrape_configs", []):
        for group in job.get("static_configs", []):
            group["targets"] = [_local_target(t, stack) for t in group["targets"]]
        # Replicas found by DNS in compose (the slide-analysis workers): here, the stack's
        # one process of that name, or none when the stack does not run it.
        if "dns_sd_configs" in job:
            names = [n for config in job.pop("dns_sd_configs") for n in config["names"]]
            local = [_local_target(f"{n}:0", stack) for n in names if n in BY_NAME]
            if not local:
                continue
            job["static_configs"] = [{"targets": local}]
        jobs.append(job)
    config["scrape_configs"] = jobs
    return config


def write_config(stack: Stack, run_dir: Path) -> Path:
    path = run_dir / "prometheus.yml"
    path.write_text(
        f"# Generated from {SOURCE} at each start; edit that file instead.\n"
        + yaml.safe_dump(local_config(stack), sort_keys=False)
    )
    return path


def command(binary: str, config: Path, stack: Stack) -> str:
    return shlex.join(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={stack.var_dir / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{stack.port('prometheus')}",
            "--storage.tsdb.retention.time=7d",
            # Its start-up chatter would drown the services' logs in the terminal.
            "--log.level=warn",
        ]
    )
