"""The prediction pass on each CPU runtime (TensorFlow, LiteRT, ONNX Runtime), side by side,
in one run, with TensorFlow as the baseline.

In-process, through the service's own `Predictor.predict` (model call and out-of-distribution
score): the median of single-image calls and the throughput of calls of 32, and the largest
difference from TensorFlow's P(malignant) and OOD score on the version's parity images. Then
the real service (`python -m inference_service`) on each runtime at 32 clients, one image per
request, so that `auto`'s choice (made from the in-process figures on the card) is checked
under service conditions. Prints one JSON object; ratios are against TensorFlow's figures of
the same run.

    .venv/bin/python -m benchmarks.runtimes [--model models/demo-synthetic-1] [--seconds 8]
        [--threads 2] [--no-service]

Needs a PostgreSQL server for the service part (as `benchmarks.inference_service`).
"""

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks.http_load import load
from benchmarks.inference_service import running_service
from ml.runtimes import RUNTIME_NAMES, TENSORFLOW

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo-synthetic-1"


def timed_calls(call, batch: np.ndarray, seconds: float) -> list[float]:
    for _ in range(5):
        call(batch)
    durations: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(durations) < 20:
        begin = time.perf_counter()
        call(batch)
        durations.append(time.perf_counter() - begin)
    return durations


def in_process(folder: Path, threads: int, seconds: float) -> dict[str, dict]:
    from inference_service.serving.predictor import Predictor
    from ml.conversion import parity_images
    from ml.versions import read_card

    card = read_card(folder)
    images, source = parity_images(folder, card)
    batch = np.resize(images, (32, *images.shape[1:])).astype(np.float32)
    figures: dict[str, dict] = {}
    reference: list = []
    for name in RUNTIME_NAMES:
        predictor = Predictor(folder.name, folder, card, name, threads)
        outputs = predictor.predict(images)
        if name == TENSORFLOW:
            reference = outputs
        single = statistics.median(timed_calls(predictor.predict, images[:1], seconds)) * 1000
        per_batch = statistics.median(timed_calls(predictor.predict, batch, seconds))
        figures[name] = {
            "single_image_median_ms": round(single, 3),
            "batch32_images_per_s": round(32 / per_batch, 1),
            "parity_images": f"{len(images)} ({source})",
            "max_abs_diff_p_malignant": max(
                abs(a.malignant_probability - b.malignant_probability)
                for a, b in zip(outputs, reference, strict=True)
            ),
            "max_abs_diff_ood_score": max(
                (
                    abs(a.ood_score - b.ood_score)
                    for a, b in zip(outputs, reference, strict=True)
                    if a.ood_score is not None and b.ood_score is not None
                ),
                default=None,
            ),
        }
    base = figures[TENSORFLOW]
    for values in figures.values():
        # Above 1: faster than TensorFlow.
        values["single_speedup_vs_tensorflow"] = round(
            base["single_image_median_ms"] / values["single_image_median_ms"], 3
        )
        values["batch32_ratio_vs_tensorflow"] = round(
            values["batch32_images_per_s"] / base["batch32_images_per_s"], 3
        )
    return figures


def in_service(folder: Path, image: bytes, threads: int, seconds: float) -> dict[str, dict]:
    figures: dict[str, dict] = {}
    for name in RUNTIME_NAMES:
        with running_service(
            folder, f"bench_runtime_{name}", runtime=name, runtime_threads=str(threads)
        ) as (_, base, headers):
            figures[name] = asyncio.run(load(f"{base}/predict", headers, image, 32, seconds))
    baseline = figures[TENSORFLOW]["images_per_s"]
    for values in figures.values():
        values["ratio_vs_tensorflow"] = round(values["images_per_s"] / baseline, 3)
    return figures


def tissue_png() -> bytes:
    from ml.bootstrap import DEMO_DATA
    from ml.synthetic import generate

    work = Path(tempfile.mkdtemp(prefix="cds-bench-runtimes-"))
    generate(work, patients=2, images_per_patient=2, size=DEMO_DATA["size"], seed=1)
    return next(work.glob("*/1/*.png")).read_bytes()


def main() -> None:
    from inference_service.serving.runtimes import choose_runtime
    from ml.versions import read_card

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEMO)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-service", action="store_true", help="in-process figures only")
    args = parser.parse_args()
    folder = args.model.resolve()
    card = read_card(folder)
    result: dict = {
        "benchmark": "runtimes",
        "model": folder.name,
        "input_size": card.input.size,
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "auto_chooses": choose_runtime(card, "auto"),
        "card": {
            name: {
                "passed": r.passed,
                "max_abs_diff": r.max_abs_diff,
                "max_abs_diff_ood_score": r.max_abs_diff_ood_score,
                "single_ms": r.single_ms,
                "batch32_per_s": r.batch32_per_s,
                "refused_reason": r.refused_reason,
            }
            for name, r in (card.runtimes or {}).items()
        },
        "in_process": in_process(folder, args.threads, args.seconds / 4),
    }
    if not args.no_service:
        service = in_service(folder, tissue_png(), args.threads, args.seconds)
        result["service_32_clients_one_image_per_request"] = service
        fastest = max(service, key=lambda name: service[name]["images_per_s"])
        result["fastest_in_service"] = fastest
        result["auto_is_fastest_in_service"] = fastest == result["auto_chooses"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
