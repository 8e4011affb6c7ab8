"""The full prediction flow through the gateway against the inference service called
directly, in one run, at 1 and 16 concurrent clients, without and with the Grad-CAM
overlay, and the CPU each process spends per request.

Starts the stack as `make run` does (every service a real process, temporary databases on
the PostgreSQL server), logs in as the admin, and sends distinct synthetic tissue PNGs of
128 px (`ml.synthetic`, each passing the quality checks, so the model gives it a label as it
would a real upload; `labelled_share` says how many got one). The direct side is
`POST /predict` on the inference service; the gateway side is `POST /api/v1/predictions`:
token and rate-limit checks, the model called, the image, overlay and prediction stored.
Each level of each side is measured with the CPU time (user + system, from /proc) of the
gateway, data and inference processes, of the PostgreSQL backends serving the run's
databases, and of this load generator, per request. `cpu_bound_estimate` is the
throughput the services' CPU alone allows on this machine's cores, as if the load
generator ran elsewhere: cores * 1000 / (services' CPU ms per request).

Prints one JSON object with the ratios the targets are stated in, for each of `no_heatmap`
and `heatmap`: the gateway's added median at 1 client (targets 10 ms and 15 ms) and gateway
/ direct throughput at 16 clients (targets 0.35 and 0.4), each with whether it is met.

    .venv/bin/python -m benchmarks.gateway_flow [--seconds 10]

Needs a PostgreSQL server (DATABASE_URL, TEST_DATABASE_URL or 127.0.0.1:5432), on this
machine (its backends' CPU is read from /proc). Without a demo model in
DEVSTACK_MODELS_DIR (default var/models) it is trained first.
"""

import argparse
import asyncio
import json
import os
import uuid

import asyncpg
import httpx
from dotenv import dotenv_values
from sqlalchemy import make_url

from benchmarks.http_load import WARM_UP_REQUESTS, load
from benchmarks.tissue import IMAGE_PX, cpu_s, tissue_pngs
from common.migrations import drop_database
from devstack import ROOT
from devstack.launcher import LaunchedStack
from devstack.postgres import LOCAL_SERVER_URL, with_database
from devstack.stack import COMPONENTS

# Every component of the stack that has a database of its own.
DATABASES = tuple(c.name for c in COMPONENTS if c.database)
SERVICES = ("gateway", "data", "inference")
LEVELS = (1, 16)
# The targets: gateway / direct throughput at 16 clients, added median at 1 client.
TARGETS = {
    "no_heatmap": {"throughput_ratio": 0.35, "added_median_ms": 10.0},
    "heatmap": {"throughput_ratio": 0.4, "added_median_ms": 15.0},
}
# Direct inference with the overlay / without, at 16 clients.
DIRECT_HEATMAP_TARGET = 0.7
# More distinct images per level than the gateway can store in the time.
IMAGES_PER_SECOND = 200
CORES = len(os.sched_getaffinity(0))


def admin_token(stack: LaunchedStack) -> str:
    stored = dotenv_values(stack.var_dir / "admin-credentials.env")
    answer = httpx.post(
        f"{stack.url('gateway')}/api/v1/auth/token",
        data={"username": stored["ADMIN_EMAIL"], "password": stored["ADMIN_PASSWORD"]},
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


class CpuMeter:
    """CPU seconds spent so far by each service, the run's PostgreSQL backends and this
    process."""

    def __init__(self, stack: LaunchedStack, server_url: str, databases: list[str]) -> None:
        self.pids = {name: self._pid(stack, name) for name in SERVICES}
        self.server_url = (
            make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self.databases = databases

    @staticmethod
    def _pid(stack: LaunchedStack, name: str) -> int:
        answer = stack.supervisorctl("pid", name)
        return int(answer.stdout.strip())

    async def backends(self) -> dict[int, float]:
        connection = await asyncpg.connect(self.server_url)
        try:
            rows = await connection.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[])",
                self.databases,
            )
        finally:
            await connection.close()
        return {row["pid"]: cpu_s(row["pid"]) for row in rows}

    async def snapshot(self) -> dict:
        times = os.times()
        return {
            **{name: cpu_s(pid) for name, pid in self.pids.items()},
            "postgres": await self.backends(),
            "load_generator": times.user + times.system,
        }

    @staticmethod
    def per_request(before: dict, after: dict, requests: int) -> dict:
        spent = {name: after[name] - before[name] for name in (*SERVICES, "load_generator")}
        # A backend that started during the level spent all its CPU in it.
        spent["postgres"] = sum(
            cpu - before["postgres"].get(pid, 0.0) for pid, cpu in after["postgres"].items()
        )
        per = {name: round(seconds * 1000 / requests, 3) for name, seconds in spent.items()}
        services = sum(per[name] for name in (*SERVICES, "postgres"))
        per["services_total"] = round(services, 3)
        return per


def labelled(response: httpx.Response) -> bool:
    return response.json().get("label") is not None


async def measure(stack: LaunchedStack, meter: CpuMeter, seconds: float) -> dict:
    headers = {"Authorization": f"Bearer {admin_token(stack)}"}
    sides = {
        "direct_inference": (f"{stack.url('inference')}/predict", (200,)),
        "gateway_flow": (f"{stack.url('gateway')}/api/v1/predictions", (201,)),
    }
    figures: dict[str, dict] = {}
    seed = 0
    for mode in TARGETS:
        params = {"heatmap": "true" if mode == "heatmap" else "false"}
        figures[mode] = {name: {} for name in sides}
        for clients in LEVELS:
            seed += 1
            # Each level its own images: the data service stores every one as new.
            images = tissue_pngs(int(seconds * IMAGES_PER_SECOND), seed)
            for name, (url, ok) in sides.items():
                before = await meter.snapshot()
                level = await load(
                    url, headers, images, clients, seconds, params=params, ok=ok, counts=labelled
                )
                after = await meter.snapshot()
                sent = level["requests"] + level["failures"] + WARM_UP_REQUESTS
                level["cpu_ms_per_request"] = meter.per_request(before, after, sent)
                level["cpu_bound_estimate_images_per_s"] = round(
                    CORES * 1000 / level["cpu_ms_per_request"]["services_total"], 1
                )
                level["labelled_share"] = round(level.pop("counted") / level["requests"], 3)
                figures[mode][name][f"clients_{clients}"] = level
    return figures


def ratios(mode: str, figures: dict) -> dict:
    direct, gateway = figures["direct_inference"], figures["gateway_flow"]
    added = gateway["clients_1"]["median_ms"] - direct["clients_1"]["median_ms"]
    ratio = gateway["clients_16"]["images_per_s"] / direct["clients_16"]["images_per_s"]
    bound = (
        gateway["clients_16"]["cpu_bound_estimate_images_per_s"]
        / direct["clients_16"]["cpu_bound_estimate_images_per_s"]
    )
    target = TARGETS[mode]
    return {
        "gateway_added_median_ms_at_1_client": round(added, 3),
        "target_added_median_ms": target["added_median_ms"],
        "added_median_met": added <= target["added_median_ms"],
        "throughput_ratio_at_16_clients": round(ratio, 3),
        "target_throughput_ratio": target["throughput_ratio"],
        "throughput_ratio_met": ratio >= target["throughput_ratio"],
        # The same ratio from the services' CPU alone (the load generator on other cores).
        "cpu_bound_ratio_estimate": round(bound, 3),
    }


def heatmap_cost(figures: dict) -> dict:
    """Direct inference at 16 clients with the Grad-CAM overlay / without (target >= 0.7)."""
    with_map, without = (
        figures[mode]["direct_inference"]["clients_16"]["images_per_s"]
        for mode in ("heatmap", "no_heatmap")
    )
    ratio = with_map / without
    return {
        "direct_heatmap_to_plain_throughput_at_16_clients": round(ratio, 3),
        "target_direct_heatmap_to_plain": DIRECT_HEATMAP_TARGET,
        "direct_heatmap_to_plain_met": ratio >= DIRECT_HEATMAP_TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    server = os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    server = server or LOCAL_SERVER_URL
    tag = uuid.uuid4().hex[:8]
    names = {name: f"bench_gw_{name}_{tag}" for name in DATABASES}
    databases = {name: with_database(server, database) for name, database in names.items()}
    os.environ.setdefault("DEVSTACK_MODELS_DIR", str(ROOT / "var" / "models"))
    stack = LaunchedStack(
        databases,
        server,
        extra_env={
            "DEVSTACK_MODELS_DIR": os.environ["DEVSTACK_MODELS_DIR"],
            "GATEWAY_RATE_LIMIT_PREDICTIONS": "1000000/hour",
            "GATEWAY_RATE_LIMIT_GENERAL": "1000000/minute",
            "LOG_LEVEL": "WARNING",
            **{f"{p}_LOG_LEVEL": "WARNING" for p in ("AUTH", "INFERENCE", "DATA", "GATEWAY")},
        },
    )
    try:
        stack.start()
        meter = CpuMeter(stack, server, list(names.values()))
        figures = asyncio.run(measure(stack, meter, args.seconds))
    finally:
        stack.close()
        for url in databases.values():
            asyncio.run(drop_database(url))
    shares = [
        level["labelled_share"]
        for mode in figures.values()
        for side in mode.values()
        for level in side.values()
    ]
    print(
        json.dumps(
            {
                "seconds_per_level": args.seconds,
                "image_px": IMAGE_PX,
                "cores": CORES,
                "labelled_share": min(shares),
                **heatmap_cost(figures),
                **{mode: {**figures[mode], **ratios(mode, figures[mode])} for mode in figures},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
