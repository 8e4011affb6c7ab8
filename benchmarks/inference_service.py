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
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from benchmarks.http_load import load
from common.migrations import drop_database, upgrade
from devstack import ROOT
from devstack.postgres import LOCAL_SERVER_URL, free_port, with_database


def jwks_server(key: Ed25519PrivateKey) -> tuple[ThreadingHTTPServer, str]:
    body = json.dumps(
        {"keys": [{**OKPAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "bench"}]}
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def token(key: Ed25519PrivateKey, subject: str = "bench") -> str:
    now = int(time.time())
    return jwt.encode(
        {
            "iss": "cds-auth",
            "aud": "cds-api",
            "sub": subject,
            "role": "clinician",
            "typ": "access",
            "iat": now,
            "exp": now + 3600,
            "jti": str(uuid.uuid4()),
        },
        key,
        algorithm="EdDSA",
        headers={"kid": "bench"},
    )


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


@contextmanager
def running_service(
    folder: Path, database_name: str, **settings: str
) -> Iterator[tuple[subprocess.Popen, str, dict[str, str]]]:
    """`python -m inference_service` serving the version `folder` (and those beside it),
    warmed up and ready, with these extra settings (`batch_max_size="8"`), on a temporary
    database and a JWKS server of its own: its process, base URL and a clinician's
    Authorization header. Everything is stopped, and the database dropped, afterwards."""
    server = (
        os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or LOCAL_SERVER_URL
    )
    database_url = with_database(server, f"{database_name}_{os.getpid()}")
    upgrade(ROOT / "inference_service", database_url)
    key = Ed25519PrivateKey.generate()
    jwks, jwks_url = jwks_server(key)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "INFERENCE_PORT": str(port),
        "INFERENCE_DATABASE_URL": database_url,
        "INFERENCE_MODELS_DIR": str(folder.parent),
        "INFERENCE_AUTH_URL": jwks_url,
        "INFERENCE_WARM_UP": "true",
        "INFERENCE_LOG_LEVEL": "WARNING",
        **{f"INFERENCE_{name.upper()}": value for name, value in settings.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "inference_service"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, process)
        yield process, base, {"Authorization": f"Bearer {token(key)}"}
    finally:
        process.terminate()
        process.wait(timeout=30)
        jwks.shutdown()
        asyncio.run(drop_database(database_url))


def wait_until_serving(base: str, process: subprocess.Popen, deadline_s: float = 180) -> None:
    """Until the service's readiness says its model is loaded; an error if it exits first
    or is not there within `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the inference service exited with {process.returncode}")
        try:
            ready = httpx.get(f"{base}/ready", timeout=2).json()
            if ready.get("checks", {}).get("model", {}).get("detail", "").startswith("serving"):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the inference service did not serve a model within {deadline_s} s")


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
