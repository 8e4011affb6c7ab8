"""The full prediction flow through the gateway against the inference service called
directly, in one run, at 1 and 16 concurrent clients.

Starts the stack as `make run` does (every service a real process, temporary databases on
the PostgreSQL server), logs in as the admin, and sends each side distinct PNG images (so
the data service stores every one, as it would in use). The direct side is
`POST /predict` on the inference service; the gateway side is `POST /api/v1/predictions`:
token and rate-limit checks, the image stored, the model called, the prediction stored.
Both run without the Grad-CAM overlay unless `--heatmap`. Prints one JSON object with the
ratios the targets are stated in: gateway median - direct median at 1 client (target
<= 20 ms) and gateway / direct throughput at 16 clients (target >= 0.5).

    .venv/bin/python -m benchmarks.gateway_flow [--seconds 10] [--heatmap]

Needs a PostgreSQL server (DATABASE_URL, TEST_DATABASE_URL or 127.0.0.1:5432). Without a
demo model in DEVSTACK_MODELS_DIR (default var/models) it is trained first.
"""

import argparse
import asyncio
import io
import json
import os
import random
import uuid

import httpx
from dotenv import dotenv_values
from PIL import Image

from benchmarks.http_load import load
from common.migrations import drop_database
from devstack import ROOT
from devstack.launcher import LaunchedStack
from devstack.postgres import LOCAL_SERVER_URL, with_database
from devstack.stack import COMPONENTS

# Every component of the stack that has a database of its own.
DATABASES = tuple(c.name for c in COMPONENTS if c.database)


def distinct_pngs(count: int, size: int = 48, seed: int = 7) -> list[bytes]:
    generator = random.Random(seed)
    images = []
    for _ in range(count):
        image = Image.frombytes("RGB", (size, size), generator.randbytes(size * size * 3))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


def admin_token(stack: LaunchedStack) -> str:
    stored = dotenv_values(stack.var_dir / "admin-credentials.env")
    answer = httpx.post(
        f"{stack.url('gateway')}/api/v1/auth/token",
        data={"username": stored["ADMIN_EMAIL"], "password": stored["ADMIN_PASSWORD"]},
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


async def measure(stack: LaunchedStack, seconds: float, heatmap: bool) -> dict:
    headers = {"Authorization": f"Bearer {admin_token(stack)}"}
    params = {"heatmap": "true" if heatmap else "false"}
    sides = {
        "direct_inference": (f"{stack.url('inference')}/predict", (200,)),
        "gateway_flow": (f"{stack.url('gateway')}/api/v1/predictions", (201,)),
    }
    figures: dict[str, dict] = {name: {} for name in sides}
    seed = 0
    for clients in (1, 16):
        for name, (url, ok) in sides.items():
            seed += 1
            # More distinct images than either side can send in the time.
            images = distinct_pngs(int(seconds * 400), seed=seed)
            figures[name][f"clients_{clients}"] = await load(
                url, headers, images, clients, seconds, params=params, ok=ok
            )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--heatmap", action="store_true", help="both sides make the overlay")
    args = parser.parse_args()

    server = os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    server = server or LOCAL_SERVER_URL
    tag = uuid.uuid4().hex[:8]
    databases = {name: with_database(server, f"bench_gw_{name}_{tag}") for name in DATABASES}
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
        figures = asyncio.run(measure(stack, args.seconds, args.heatmap))
    finally:
        stack.close()
        for url in databases.values():
            asyncio.run(drop_database(url))
    direct, gateway = figures["direct_inference"], figures["gateway_flow"]
    added = gateway["clients_1"]["median_ms"] - direct["clients_1"]["median_ms"]
    ratio = gateway["clients_16"]["images_per_s"] / direct["clients_16"]["images_per_s"]
    print(
        json.dumps(
            {
                "heatmap": args.heatmap,
                "seconds_per_level": args.seconds,
                **figures,
                "gateway_added_median_ms_at_1_client": round(added, 3),
                "target_added_median_ms": 20,
                "throughput_ratio_at_16_clients": round(ratio, 3),
                "target_throughput_ratio": 0.5,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
