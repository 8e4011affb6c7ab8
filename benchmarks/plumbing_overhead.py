"""What the shared service plumbing costs per request.

Serves the same small JSON route from a bare FastAPI app (the baseline) and from an app made
by `common.app.create_service_app` (request ids, access log, error handlers, Prometheus
instrumentation), each in its own uvicorn process, and times sequential requests to both,
interleaved in blocks so that machine noise hits both alike. Prints one JSON object; the
figure to read is `ratio_p50` (service / baseline).

    .venv/bin/python -m benchmarks.plumbing_overhead [--requests 2000]
"""

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time

import httpx
import uvicorn
from fastapi import FastAPI

from devstack.postgres import free_port

BLOCK = 100  # requests sent to one server before switching to the other


def add_probe_route(app: FastAPI) -> FastAPI:
    # Not `/health`: the plumbing logs health probes at DEBUG, and this should pay full price.
    @app.get("/probe")
    async def probe() -> dict[str, str]:
        return {"status": "ok"}

    return app


def bare_app() -> FastAPI:
    return add_probe_route(FastAPI())


def service_app() -> FastAPI:
    from pydantic_settings import SettingsConfigDict

    from common.app import create_service_app
    from common.settings import ServiceSettings

    class BenchmarkSettings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="BENCHMARK_", env_file=None)
        port: int = 0

    settings = BenchmarkSettings()
    return add_probe_route(create_service_app(service="benchmark", title="b", settings=settings))


def serve(kind: str, port: int) -> None:
    app = bare_app() if kind == "bare" else service_app()
    logging.getLogger().setLevel(logging.INFO)  # access lines are written, as in production
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def start(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.plumbing_overhead",
            "--serve",
            kind,
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    url = f"http://127.0.0.1:{port}"
    # Generous: a busy machine takes many seconds to import FastAPI and start uvicorn.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/probe", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the {kind} server did not answer GET {url}/probe within 120 s")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 4),
        "p95_ms": round(percentile(samples, 0.95) * 1000, 4),
        "mean_ms": round(statistics.fmean(samples) * 1000, 4),
    }


def measure(requests: int) -> dict[str, object]:
    servers = {kind: start(kind) for kind in ("bare", "service")}
    samples: dict[str, list[float]] = {"bare": [], "service": []}
    try:
        with httpx.Client() as client:
            for _, url in servers.values():  # warm-up: connections, imports, first-call caches
                for _ in range(BLOCK):
                    client.get(f"{url}/probe").raise_for_status()
            while len(samples["service"]) < requests:
                for kind, (_, url) in servers.items():
                    for _ in range(BLOCK):
                        started = time.perf_counter()
                        client.get(f"{url}/probe").raise_for_status()
                        samples[kind].append(time.perf_counter() - started)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=10)
    bare, service = summary(samples["bare"]), summary(samples["service"])
    return {
        "benchmark": "plumbing_overhead",
        "requests_per_server": len(samples["service"]),
        "baseline": {"name": "bare FastAPI app", **bare},
        "service": {"name": "create_service_app", **service},
        "ratio_p50": round(service["p50_ms"] / bare["p50_ms"], 3),
        "ratio_p95": round(service["p95_ms"] / bare["p95_ms"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--serve", choices=("bare", "service"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
    else:
        print(json.dumps(measure(args.requests), indent=2))


if __name__ == "__main__":
    main()
