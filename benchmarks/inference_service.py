"""The inference service against its own model, in one run.

Baseline, in-process: the served model (on the runtime the service chooses, `auto`) on one
image (latency) and on batches of 32 (throughput and CPU per image), and the Grad-CAM pass on
batches of 32. Then the real service (`python -m inference_service`, with its database,
token checks and dynamic batching) over HTTP: one 128 px tissue PNG per request at 1, 16 and
32 clients and with the overlay at 16; patches as one .npy array of 64 per request
(`POST /predict/batch`) at 4 clients, with and without the quality checks; and `/health` at
32 clients, the ceiling of any request on this machine. Each level gives the service
process's CPU milliseconds per image.

Prints one JSON object with the ratios the targets are stated in: service throughput / raw
batch-32 throughput through the .npy batch endpoint (>= 0.7) and one image per request at 32
clients (>= 0.3); the same against the /health ceiling (>= 0.6); with the overlay / without
at 16 clients (>= 0.7). `cpu_bound` ratios divide the raw CPU per image by the service's: the
throughput ratio with the load generator on other cores.

    .venv/bin/python -m benchmarks.inference_service [--model var/models/VERSION]
        [--seconds 10] [--batch-wait-ms 2]

Needs a PostgreSQL server (TEST_DATABASE_URL, DATABASE_URL, or 127.0.0.1:5432); a
temporary database is created and dropped. Without --model, the shipped demo model serves.
"""

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import httpx
import numpy as np
from PIL import Image

from benchmarks.http_load import WARM_UP_REQUESTS, load
from benchmarks.service_process import service_process, temporary_database_url
from benchmarks.tissue import cpu_s, render_tissues, tissue_pngs
from inference_service.serving.arrays import NPY_MEDIA_TYPE


def raw_figures(folder: Path, tissue: np.ndarray) -> dict:
    from inference_service.serving.predictor import Predictor
    from inference_service.serving.runtimes import AUTO, choose_runtime
    from ml.contract import preprocess_image
    from ml.versions import read_card

    card = read_card(folder)
    runtime = choose_runtime(card, AUTO)
    predictor = Predictor(folder.name, folder, card, runtime)
    single = preprocess_image(Image.fromarray(tissue), predictor.size)[None]
    batch = np.repeat(single, 32, axis=0)
    for _ in range(20):
        predictor.predict(single)
        predictor.predict(batch)
        predictor.explain(batch)
    latencies = []
    for _ in range(300):
        started = time.perf_counter()
        predictor.predict(single)
        latencies.append(time.perf_counter() - started)
    rounds = 60
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        predictor.predict(batch)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    explain_started = time.perf_counter()
    for _ in range(rounds // 3):
        predictor.explain(batch)
    explain_elapsed = time.perf_counter() - explain_started
    return {
        "runtime": runtime,
        "single_image_median_ms": round(statistics.median(latencies) * 1000, 3),
        "batch32_images_per_s": round(rounds * 32 / elapsed, 1),
        "batch32_cpu_ms_per_image": round(cpu * 1000 / (rounds * 32), 3),
        "explain_batch32_images_per_s": round(rounds // 3 * 32 / explain_elapsed, 1),
    }


def serving_a_model(ready: httpx.Response) -> bool:
    """The readiness of an inference service whose model is loaded."""
    detail = ready.json().get("checks", {}).get("model", {}).get("detail", "")
    return isinstance(detail, str) and detail.startswith("serving")


@contextmanager
def running_service(
    folder: Path, database_name: str, **settings: str
) -> Iterator[tuple[subprocess.Popen, str, dict[str, str]]]:
    """`python -m inference_service` serving the version `folder` (and those beside it),
    warmed up and ready, with these extra settings (`batch_max_size="8"`), on a temporary
    database and a JWKS server of its own: its process, base URL and a clinician's
    Authorization header. Everything is stopped, and the database dropped, afterwards."""
    with service_process(
        "inference_service",
        "INFERENCE_",
        temporary_database_url(database_name),
        {"models_dir": str(folder.parent), "warm_up": "true", **settings},
        serving_a_model,
    ) as running:
        yield running


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def npy_body(patches: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, patches)
    return buffer.getvalue()


class Levels:
    """Load levels on one running service, each with the service's CPU per image."""

    def __init__(self, process: subprocess.Popen, base: str, headers: dict, seconds: float):
        self.pid = process.pid
        self.base = base
        self.headers = headers
        self.seconds = seconds

    def run(self, path: str, body, clients: int, images_per_request: int = 1, **options) -> dict:
        before = cpu_s(self.pid)
        level = asyncio.run(
            load(
                f"{self.base}{path}",
                self.headers if body is not None else {},
                body,
                clients,
                self.seconds,
                images_per_request=images_per_request,
                **options,
            )
        )
        sent = (level["requests"] + level["failures"] + WARM_UP_REQUESTS) * images_per_request
        level["service_cpu_ms_per_image"] = round((cpu_s(self.pid) - before) * 1000 / sent, 3)
        return level


def ratio(value: float, baseline: float, target: float) -> dict:
    return {
        "ratio": round(value / baseline, 3),
        "target": target,
        "met": value / baseline >= target,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    parser.add_argument("--batch-max-size", type=int, default=32)
    parser.add_argument("--patches-per-request", type=int, default=64)
    args = parser.parse_args()

    if args.model is None:
        from ml.bootstrap import DEMO_VERSION, SHIPPED_MODELS_DIR

        args.model = SHIPPED_MODELS_DIR / DEMO_VERSION
    folder = args.model.resolve()
    tissues = render_tissues(seed=1, count=16)
    pngs = tissue_pngs(256, seed=2)
    patches = np.stack([tissues[i % len(tissues)] for i in range(args.patches_per_request)])
    npy = npy_body(patches)
    raw = raw_figures(folder, tissues[0])

    with running_service(
        folder,
        "bench_inference",
        batch_max_wait_ms=str(args.batch_wait_ms),
        batch_max_size=str(args.batch_max_size),
    ) as (process, base, headers):
        levels = Levels(process, base, headers, args.seconds)
        one = levels.run("/predict", pngs, 1)
        plain_16 = levels.run("/predict", pngs, 16)
        heatmap_16 = levels.run("/predict", pngs, 16, params={"heatmap": "true"})
        many = levels.run("/predict", pngs, 32)
        npy_options = {"content_type": NPY_MEDIA_TYPE}
        batch_checked = levels.run(
            "/predict/batch", npy, 4, args.patches_per_request, **npy_options
        )
        batch_unchecked = levels.run(
            "/predict/batch",
            npy,
            4,
            args.patches_per_request,
            params={"quality": "false"},
            **npy_options,
        )
        # The same machine's ceiling for any request to this service: no model, no body.
        ceiling = levels.run("/health", None, 32)
        memory = rss_mb(process.pid)

    raw_rate, raw_cpu = raw["batch32_images_per_s"], raw["batch32_cpu_ms_per_image"]
    print(
        json.dumps(
            {
                "benchmark": "inference_service",
                "model": folder.name,
                "input_size": json.loads((folder / "model_card.json").read_text())["input"]["size"],
                "cpu_count": os.cpu_count(),
                "batch_max_wait_ms": args.batch_wait_ms,
                "batch_max_size": args.batch_max_size,
                "patches_per_request": args.patches_per_request,
                "raw": raw,
                "service_1_client": one,
                "service_16_clients": plain_16,
                "service_16_clients_heatmap": heatmap_16,
                "service_32_clients": many,
                "npy_batch_4_clients_quality_checked": batch_checked,
                "npy_batch_4_clients_quality_skipped": batch_unchecked,
                "http_ceiling_32_clients_health": ceiling,
                "service_rss_mb": memory,
                "added_median_latency_1_client_ms": round(
                    one["median_ms"] - raw["single_image_median_ms"], 3
                ),
                "targets": {
                    "npy_batch_to_raw_batch32": ratio(
                        batch_unchecked["images_per_s"], raw_rate, 0.7
                    ),
                    "npy_batch_quality_checked_to_raw_batch32": ratio(
                        batch_checked["images_per_s"], raw_rate, 0.7
                    ),
                    "one_per_request_32_clients_to_raw_batch32": ratio(
                        many["images_per_s"], raw_rate, 0.3
                    ),
                    "npy_batch_to_health_ceiling": ratio(
                        batch_unchecked["images_per_s"], ceiling["images_per_s"], 0.6
                    ),
                    "one_per_request_32_clients_to_health_ceiling": ratio(
                        many["images_per_s"], ceiling["images_per_s"], 0.6
                    ),
                    "heatmap_to_plain_16_clients": ratio(
                        heatmap_16["images_per_s"], plain_16["images_per_s"], 0.7
                    ),
                },
                # Raw CPU per image / the service's: the ratios with the load generator on
                # other cores (the service's CPU alone bounds its throughput).
                "cpu_bound": {
                    "npy_batch_to_raw_batch32": round(
                        raw_cpu / batch_unchecked["service_cpu_ms_per_image"], 3
                    ),
                    "npy_batch_quality_checked_to_raw_batch32": round(
                        raw_cpu / batch_checked["service_cpu_ms_per_image"], 3
                    ),
                    "one_per_request_32_clients_to_raw_batch32": round(
                        raw_cpu / many["service_cpu_ms_per_image"], 3
                    ),
                    "heatmap_to_plain_16_clients": round(
                        plain_16["service_cpu_ms_per_image"]
                        / heatmap_16["service_cpu_ms_per_image"],
                        3,
                    ),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
