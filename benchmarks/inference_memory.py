"""Peak memory of the inference service answering images at the pixel limit, overlay on.

Starts the real service (`python -m inference_service`, with its database and token checks)
on the demonstration model, lets it answer one small image with its Grad-CAM overlay (so
the model and the gradient function are loaded and traced), and takes its resident memory
as idle. Then, for a PNG and a JPEG of `--side` x `--side` pixels (6000 x 6000 is 36
megapixels, under the 40 megapixel limit), it resets the kernel's high-water mark of the
process (`/proc/<pid>/clear_refs`), sends one request with `heatmap=true`, reads the peak
(`VmHWM` of `/proc/<pid>/status`: exact, no sampling), then does the same with
`--concurrency` such requests at once. Prints one JSON object with idle, peak and peak above
idle for each, and whether the targets are met: at most 300 MiB above idle for one request,
and flat under concurrency (at most 25 % or 100 MiB above the single request's figure).

    .venv/bin/python -m benchmarks.inference_memory [--side 6000] [--concurrency 8]
        [--model models/demo-synthetic-1]

Needs a PostgreSQL server (TEST_DATABASE_URL, DATABASE_URL, or 127.0.0.1:5432); a
temporary database is created and dropped.
"""

import argparse
import asyncio
import io
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import httpx
import numpy as np
from PIL import Image

from benchmarks.inference_service import running_service

SINGLE_TARGET_MIB = 300
# "Flat": concurrent requests may add at most this much to the single request's figure.
FLAT_RATIO = 1.25
FLAT_MIB = 100


def large_images(side: int) -> dict[str, bytes]:
    """A PNG and a JPEG of side x side pixels, small on the wire like the reported one: a
    coarse pattern of random colours (blocky for the PNG, which then compresses well;
    smooth for the JPEG, as a photograph is)."""
    coarse = np.random.default_rng(0).integers(0, 256, (side // 16, side // 16, 3), np.uint8)
    small = Image.fromarray(coarse)
    images = {}
    for name, resample, options in (
        ("png", Image.Resampling.NEAREST, {}),
        ("jpeg", Image.Resampling.BILINEAR, {"quality": 90}),
    ):
        buffer = io.BytesIO()
        small.resize((side, side), resample).save(buffer, name.upper(), **options)
        images[name] = buffer.getvalue()
    return images


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def reset_peak(pid: int) -> None:
    """Start the high-water mark (VmHWM) again from the current resident size."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def send(base: str, headers: dict[str, str], data: bytes, count: int) -> list[int]:
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/predict",
                    params={"heatmap": "true"},
                    content=data,
                    headers={**headers, "Content-Type": "application/octet-stream"},
                )
                for _ in range(count)
            )
        )
    return [answer.status_code for answer in answers]


def measure(pid: int, base: str, headers: dict[str, str], data: bytes, count: int, idle: int):
    reset_peak(pid)
    started = time.perf_counter()
    statuses = asyncio.run(send(base, headers, data, count))
    seconds = time.perf_counter() - started
    peak = status_kib(pid, "VmHWM")
    return {
        "requests": count,
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "peak_mib": mib(peak),
        "peak_above_idle_mib": mib(peak - idle),
        "rss_after_mib": mib(status_kib(pid, "VmRSS")),
        "seconds": round(seconds, 2),
    }


def verdict(single: dict, concurrent: dict) -> dict:
    one, many = single["peak_above_idle_mib"], concurrent["peak_above_idle_mib"]
    flat_limit = round(max(one * FLAT_RATIO, one + FLAT_MIB), 1)
    return {
        "single_at_most_mib": SINGLE_TARGET_MIB,
        "single_pass": one <= SINGLE_TARGET_MIB,
        "concurrent_at_most_mib": flat_limit,
        "concurrent_pass": many <= flat_limit,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a model version folder (default: the demo)")
    parser.add_argument("--side", type=int, default=6000, help="side of the test images")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    folder = args.model
    if folder is None:
        from ml.bootstrap import DEMO_VERSION, SHIPPED_MODELS_DIR

        folder = SHIPPED_MODELS_DIR / DEMO_VERSION
    folder = folder.resolve()
    images = large_images(args.side)
    warm_up = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(warm_up, "PNG")

    results: dict[str, dict] = {}
    with running_service(folder, "bench_inference_memory") as (process, base, headers):
        warmed = asyncio.run(send(base, headers, warm_up.getvalue(), 1))
        if warmed != [200]:
            raise RuntimeError(f"the warm-up prediction answered {warmed}")
        idle = status_kib(process.pid, "VmRSS")
        for name, data in images.items():
            results[f"{name}_1"] = measure(process.pid, base, headers, data, 1, idle)
        for name, data in images.items():
            results[f"{name}_{args.concurrency}"] = measure(
                process.pid, base, headers, data, args.concurrency, idle
            )

    print(
        json.dumps(
            {
                "benchmark": "inference_memory",
                "model": folder.name,
                "cpu_count": os.cpu_count(),
                "side": args.side,
                "pixels": args.side * args.side,
                "bytes": {name: len(data) for name, data in images.items()},
                "concurrency": args.concurrency,
                "idle_mib": mib(idle),
                "runs": results,
                "targets": {
                    name: verdict(results[f"{name}_1"], results[f"{name}_{args.concurrency}"])
                    for name in images
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
