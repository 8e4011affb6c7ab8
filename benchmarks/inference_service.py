"""The inference service against its own model, in one run.

Baseline, in-process: the served model's compiled call on one image (latency) and on
batches of 32 (throughput). Then the real service (`python -m inference_service`, with its
database, token checks and dynamic batching) over HTTP at 1 and at 32 concurrent clients,
and its resident memory with the model loaded. Prints one JSON object with the ratios the
targets are stated in: service throughput at 32 clients / raw batched throughput (target
>= 0.7), service median latency at 1 client - raw single latency (target <= 5 ms).

    .venv/bin/python -m benchmarks.inference_service [--model var/models/VERSION]
        [--seconds 10] [--batch-wait-ms 2]

Needs a PostgreSQL server (TEST_DATABASE_URL, DATABASE_URL, or 127.0.0.1:5432); a
temporary database is created and dropped. Without --model, the demo model is trained first.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import httpx

from benchmarks.http_load import load
from benchmarks.service_process import service_process, temporary_database_url


def raw_figures(folder: Path, image: bytes) -> dict:
    import numpy as np

    from inference_service.serving.predictor import Predictor
    from ml.contract import decode_image, preprocess_image
    from ml.versions import read_card

    predictor = Predictor(folder.name, folder, read_card(folder))
    single = preprocess_image(decode_image(image), predictor.size)[None]
    batch = np.repeat(single, 32, axis=0)
    for _ in range(20):
        predictor.predict(single)
        predictor.predict(batch)
    latencies = []
    for _ in range(300):
        started = time.perf_counter()
        predictor.predict(single)
        latencies.append(time.perf_counter() - started)
    rounds = 60
    started = time.perf_counter()
    for _ in range(rounds):
        predictor.predict(batch)
    throughput = rounds * 32 / (time.perf_counter() - started)
    return {
        "single_image_median_ms": round(statistics.median(latencies) * 1000, 3),
        "batch32_images_per_s": round(throughput, 1),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    parser.add_argument("--batch-max-size", type=int, default=32)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cds-bench-inference-"))
    folder = args.model
    if folder is None:
        from ml.bootstrap import DEMO_DATA, DEMO_VERSION, SHIPPED_MODELS_DIR
        from ml.synthetic import generate

        folder = SHIPPED_MODELS_DIR / DEMO_VERSION
        generate(work / "demo", patients=2, images_per_patient=2, size=DEMO_DATA["size"], seed=1)
    folder = folder.resolve()
    image = next((work / "demo").glob("*/1/*.png"), None) if args.model is None else None
    if image is None:
        from io import BytesIO

        import numpy as np
        from PIL import Image

        buffer = BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 50, 3), np.uint8)).save(
            buffer, "PNG"
        )
        image_bytes = buffer.getvalue()
    else:
        image_bytes = image.read_bytes()

    raw = raw_figures(folder, image_bytes)

    with running_service(
        folder,
        "bench_inference",
        batch_max_wait_ms=str(args.batch_wait_ms),
        batch_max_size=str(args.batch_max_size),
    ) as (process, base, headers):
        one = asyncio.run(load(f"{base}/predict", headers, image_bytes, 1, args.seconds))
        many = asyncio.run(load(f"{base}/predict", headers, image_bytes, 32, args.seconds))
        # The same machine's ceiling for any request to this service: no model, no body.
        ceiling = asyncio.run(load(f"{base}/health", {}, None, 32, args.seconds / 2))
        memory = rss_mb(process.pid)

    print(
        json.dumps(
            {
                "benchmark": "inference_service",
                "model": folder.name,
                "input_size": json.loads((folder / "model_card.json").read_text())["input"]["size"],
                "cpu_count": os.cpu_count(),
                "batch_max_wait_ms": args.batch_wait_ms,
                "batch_max_size": args.batch_max_size,
                "raw": raw,
                "service_1_client": one,
                "service_32_clients": many,
                "service_rss_mb": memory,
                "http_ceiling_32_clients_health": ceiling,
                "ratio_throughput_32_clients_to_raw_batch32": round(
                    many["images_per_s"] / raw["batch32_images_per_s"], 3
                ),
                "added_median_latency_1_client_ms": round(
                    one["median_ms"] - raw["single_image_median_ms"], 3
                ),
                "ratio_throughput_32_clients_to_http_ceiling": round(
                    many["images_per_s"] / ceiling["images_per_s"], 3
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
