"""Training throughput of the seed CNN and the time of a full demo bootstrap.

In one run: the model trained on images already in memory (the baseline: the model's own
cost), then the same model trained through the project's input pipeline (each file decoded
and preprocessed by `ml.contract.preprocess_image`, cached after the first epoch), and
finally `python -m ml.bootstrap --rebuild` from nothing (synthetic data, training, evaluation,
card: what `make demo-model` runs, and `make run` when the shipped demo model is unusable)
against its 180-second budget. Prints one JSON object.

    .venv/bin/python -m benchmarks.training_throughput [--images 960] [--size 128]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BOOTSTRAP_BUDGET_S = 180.0


def images_per_second(fit, images: int, epochs: int) -> float:
    started = time.perf_counter()
    fit(epochs)
    return images * epochs / (time.perf_counter() - started)


def measure(images: int, size: int, batch: int, skip_bootstrap: bool) -> dict:
    import keras
    import numpy as np

    from ml.config import ModelConfig, TrainingConfig
    from ml.datasets import read_dataset
    from ml.model import build_model, compile_model
    from ml.pipeline import load_image, make_dataset
    from ml.synthetic import generate

    work = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    generate(work / "data", patients=images // 24, images_per_patient=24, size=size, seed=3)
    samples, _ = read_dataset(work / "data")

    def model():
        keras.utils.set_random_seed(0)
        return compile_model(build_model(ModelConfig(input_size=size), 0), TrainingConfig())

    arrays = np.stack([load_image(s, size) for s in samples])
    labels = np.array([s.label for s in samples], dtype="float32")
    in_memory = model()
    in_memory.fit(arrays[:batch], labels[:batch], epochs=1, verbose=0)  # build and warm up
    baseline = images_per_second(
        lambda e: in_memory.fit(
            arrays, labels, batch_size=batch, epochs=e, verbose=0, shuffle=False
        ),
        len(samples),
        2,
    )

    pipelined = model()
    dataset = make_dataset(samples, size, batch, shuffle_seed=0)
    first_epoch = images_per_second(
        lambda e: pipelined.fit(dataset, epochs=e, verbose=0, shuffle=False), len(samples), 1
    )
    cached = images_per_second(
        lambda e: pipelined.fit(dataset, epochs=e, verbose=0, shuffle=False), len(samples), 2
    )

    result = {
        "benchmark": "training_throughput",
        "images": len(samples),
        "input_size": size,
        "batch_size": batch,
        "cpu_count": os.cpu_count(),
        "baseline_in_memory_images_per_s": round(baseline, 1),
        "pipeline_first_epoch_images_per_s": round(first_epoch, 1),
        "pipeline_cached_images_per_s": round(cached, 1),
        "ratio_pipeline_cached_to_baseline": round(cached / baseline, 3),
        "ratio_pipeline_first_epoch_to_baseline": round(first_epoch / baseline, 3),
    }
    if not skip_bootstrap:
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ml.bootstrap",
                "--rebuild",
                "--models-dir",
                str(work / "models"),
                "--data",
                str(work / "demo"),
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"},
        )
        seconds = time.perf_counter() - started
        card = json.loads((work / "models" / "demo-synthetic-1" / "model_card.json").read_text())
        result["bootstrap_seconds"] = round(seconds, 1)
        result["bootstrap_budget_seconds"] = BOOTSTRAP_BUDGET_S
        result["ratio_bootstrap_to_budget"] = round(seconds / BOOTSTRAP_BUDGET_S, 3)
        result["demo_test_metrics"] = {
            k: round(v, 4) for k, v in card["metrics"].items() if isinstance(v, float)
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=960)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--skip-bootstrap", action="store_true")
    args = parser.parse_args()
    print(json.dumps(measure(args.images, args.size, args.batch, args.skip_bootstrap), indent=2))


if __name__ == "__main__":
    main()
