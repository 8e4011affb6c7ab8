"""A bounded load test through the gateway: mixed traffic at rising concurrency.

Starts the stack as `make run` does (every service a real process, temporary databases on
the PostgreSQL server), makes a clinician, and runs closed-loop clients for a fixed time at
each concurrency level. Each client sends a mix like a clinic's day: predictions (distinct
PNG images, with the Grad-CAM overlay unless `--no-heatmap`), listings of predictions,
statistics and patient searches. Prints one JSON object: per level, throughput, p50/p95/p99
latency, error rate and counts by status; the level where p95 first passes 1 s
(saturation); and whether the targets hold: no 5xx at any level below saturation, and 429
only from the rate limiter (every 429 carries the limiter's `X-RateLimit-*` headers).

    .venv/bin/python -m benchmarks.load [--levels 1,2,4,8,16,32] [--seconds 8]

The gateway's limits are raised for the run (a load test measures capacity, not the
limiter) unless `--keep-limits`; then 429s are expected and counted. Needs a PostgreSQL
server (DATABASE_URL, TEST_DATABASE_URL or 127.0.0.1:5432).

Against a stack that already runs, with its own limits: `--gateway http://host:port` and the
access token of the clinician who sends the traffic in `BENCHMARK_TOKEN`.
"""

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from benchmarks.gateway_flow import DATABASES, admin_token
from benchmarks.tissue import render_tissues, variant_png
from common.migrations import drop_database
from devstack.launcher import LaunchedStack
from devstack.postgres import LOCAL_SERVER_URL, with_database

PASSWORD = "copper meadow lantern 58"
# Share of each kind of request in the mix.
MIX = {"predict": 0.25, "list_predictions": 0.4, "stats": 0.2, "search_patients": 0.15}
SATURATION_P95_MS = 1000.0


@dataclass
class Level:
    clients: int
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)
    limiter_429: int = 0
    other_429: int = 0
    transport_errors: int = 0
    elapsed_s: float = 0.0

    def summary(self) -> dict:
        ordered = sorted(self.latencies_ms)

        def percentile(q: float) -> float | None:
            return (
                round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else None
            )

        total = sum(self.statuses.values()) + self.transport_errors
        failed = sum(n for s, n in self.statuses.items() if s >= 400) + self.transport_errors
        return {
            "clients": self.clients,
            "requests": total,
            "throughput_rps": round(total / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "p50_ms": percentile(0.50),
            "p95_ms": percentile(0.95),
            "p99_ms": percentile(0.99),
            "error_rate": round(failed / total, 4) if total else None,
            "status_5xx": sum(n for s, n in self.statuses.items() if s >= 500),
            "status_429": self.limiter_429 + self.other_429,
            "status_429_not_from_limiter": self.other_429,
            "transport_errors": self.transport_errors,
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
            "by_kind": dict(self.by_kind),
        }


class Traffic:
    def __init__(self, gateway: str, token: str, patient_id: str, heatmap: bool, seed: int):
        self.gateway = gateway
        self.headers = {"Authorization": f"Bearer {token}"}
        self.patient_id = patient_id
        self.heatmap = heatmap
        self.random = random.Random(seed)
        # Each client renders its own tissues, so no two clients send the same image.
        self.tissues = render_tissues(seed, count=4)
        self.sent = 0

    def new_image(self) -> bytes:
        self.sent += 1
        return variant_png(self.tissues, self.sent)

    def next_request(self, client: httpx.AsyncClient):
        kind = self.random.choices(list(MIX), weights=list(MIX.values()))[0]
        if kind == "predict":
            request = client.post(
                f"{self.gateway}/api/v1/predictions",
                params={"heatmap": str(self.heatmap).lower()},
                # A new image each time (made on demand), so every one is stored, as in use.
                files={"file": ("slide.png", self.new_image(), "image/png")},
                data={"patient_id": self.patient_id},
                headers=self.headers,
            )
        elif kind == "list_predictions":
            request = client.get(
                f"{self.gateway}/api/v1/predictions", params={"limit": 20}, headers=self.headers
            )
        elif kind == "stats":
            request = client.get(f"{self.gateway}/api/v1/stats", headers=self.headers)
        else:
            request = client.get(
                f"{self.gateway}/api/v1/patients", params={"search": "L-"}, headers=self.headers
            )
        return kind, request


async def run_level(traffic: Traffic, clients: int, seconds: float) -> Level:
    level = Level(clients)
    deadline = time.monotonic() + seconds

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            kind, request = traffic.next_request(client)
            started = time.perf_counter()
            try:
                response = await request
            except httpx.TransportError:
                level.transport_errors += 1
                continue
            level.latencies_ms.append((time.perf_counter() - started) * 1000)
            level.statuses[response.status_code] += 1
            level.by_kind[kind] += 1
            if response.status_code == 429:
                # The limiter's own answers carry its headers; anything else is not it.
                if "x-ratelimit-limit" in response.headers and "retry-after" in response.headers:
                    level.limiter_429 += 1
                else:
                    level.other_429 += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        level.elapsed_s = time.monotonic() - started
    return level


def make_clinician(gateway: str, admin: str) -> str:
    """A clinician of the benchmark's own to send the traffic; their access token."""
    email = f"load-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=gateway, timeout=30) as api:
        created = api.post(
            "/api/v1/admin/users",
            json={"email": email, "full_name": "Load", "role": "clinician", "password": PASSWORD},
            headers={"Authorization": f"Bearer {admin}"},
        )
        created.raise_for_status()
        login = api.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
        login.raise_for_status()
    return login.json()["access_token"]


def make_patient(gateway: str, token: str) -> str:
    """The patient the predictions belong to."""
    with httpx.Client(base_url=gateway, timeout=30) as api:
        patient = api.post(
            "/api/v1/patients",
            json={"external_ref": f"L-{uuid.uuid4().hex[:8]}"},
            headers={"Authorization": f"Bearer {token}"},
        )
        patient.raise_for_status()
    return patient.json()["id"]


def verdict(levels: list[dict]) -> dict:
    """Saturation (the first level whose p95 passes 1 s) and whether the targets hold."""
    saturated = next((r["clients"] for r in levels if (r["p95_ms"] or 0) > SATURATION_P95_MS), None)
    below = [r for r in levels if saturated is None or r["clients"] < saturated]
    return {
        "levels": levels,
        "saturation_clients": saturated,
        "saturation_rule": f"the first level whose p95 exceeds {SATURATION_P95_MS:.0f} ms",
        "targets": {
            "no_5xx_below_saturation": all(r["status_5xx"] == 0 for r in below),
            "429_only_from_the_rate_limiter": all(
                r["status_429_not_from_limiter"] == 0 for r in levels
            ),
        },
    }


async def measure(
    gateway: str, token: str, levels: list[int], seconds: float, heatmap: bool
) -> dict:
    patient_id = make_patient(gateway, token)
    results = []
    for index, clients in enumerate(levels):
        traffic = Traffic(gateway, token, patient_id, heatmap, seed=index + 1)
        results.append((await run_level(traffic, clients, seconds)).summary())
    return verdict(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--no-heatmap", action="store_true")
    parser.add_argument("--keep-limits", action="store_true")
    parser.add_argument("--gateway", help="a running stack's gateway, instead of starting one")
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    heatmap = not args.no_heatmap
    if args.gateway:
        figures = asyncio.run(
            measure(args.gateway, os.environ["BENCHMARK_TOKEN"], levels, args.seconds, heatmap)
        )
        report(args, figures, "the running stack's")
        return

    server = os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    server = server or LOCAL_SERVER_URL
    suffix = uuid.uuid4().hex[:8]
    databases = {n: with_database(server, f"bench_load_{n}_{suffix}") for n in DATABASES}
    limits = (
        {}
        if args.keep_limits
        else {
            "GATEWAY_RATE_LIMIT_PREDICTIONS": "1000000/hour",
            "GATEWAY_RATE_LIMIT_GENERAL": "1000000/minute",
        }
    )
    stack = LaunchedStack(databases, server, extra_env=limits)
    try:
        stack.start()
        gateway = stack.url("gateway")
        token = make_clinician(gateway, admin_token(stack))
        figures = asyncio.run(measure(gateway, token, levels, args.seconds, heatmap))
    finally:
        stack.close()
        for url in databases.values():
            asyncio.run(drop_database(url))
    report(args, figures, "default" if args.keep_limits else "raised")


def report(args: argparse.Namespace, figures: dict, rate_limits: str) -> None:
    print(
        json.dumps(
            {
                "benchmark": "load",
                "seconds_per_level": args.seconds,
                "heatmap": not args.no_heatmap,
                "rate_limits": rate_limits,
                "mix": MIX,
                **figures,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
