"""How well the quality checks (`ml.quality`) tell assessable tissue from what is not, on the
evaluation set (`ml.evaluation_set`), with the default limits. Prints JSON: the false-refusal
rate on assessable tissue (target at most 2 %), and per kind of non-assessable image the miss
rate (the image was not refused for any of its expected reasons; target at most 5 %), plus what one
image costs to measure, beside what `preprocess_image` (the model's input, 50 px) costs on
the same images.

    python -m benchmarks.assessability --per-kind 200
"""

import argparse
import json
import time

from PIL import Image

from ml.contract import preprocess_image
from ml.evaluation_set import ASSESSABLE, KINDS, examples
from ml.quality import QualityLimits, quality_checks

FALSE_REFUSAL_TARGET = 0.02
MISS_TARGET = 0.05
MODEL_SIDE = 50  # the IDC patch size the demo model takes


def run(per_kind: int, seed: int = 0, limits: QualityLimits | None = None) -> dict:
    limits = limits or QualityLimits()
    measured = 0
    spent = 0.0
    preprocessing = 0.0
    rates: dict[str, dict] = {}
    for kind in KINDS:
        wrong = 0
        for example in examples(kind, per_kind, seed):
            started = time.perf_counter()
            checks = quality_checks(example.image, limits)
            spent += time.perf_counter() - started
            started = time.perf_counter()
            preprocess_image(Image.fromarray(example.image), MODEL_SIDE)
            preprocessing += time.perf_counter() - started
            measured += 1
            failed = {check.reason for check in checks if not check.passed}
            wrong += bool(failed) if kind == ASSESSABLE else not failed & set(example.expected)
        rates[kind] = {"images": per_kind, "wrong": wrong, "rate": round(wrong / per_kind, 4)}
    tissue = rates.pop(ASSESSABLE)
    return {
        "per_kind": per_kind,
        "seed": seed,
        "false_refusal_rate": tissue["rate"],
        "false_refusal_target": FALSE_REFUSAL_TARGET,
        "miss_rate": {kind: rate["rate"] for kind, rate in rates.items()},
        "miss_target": MISS_TARGET,
        "within_targets": tissue["rate"] <= FALSE_REFUSAL_TARGET
        and all(rate["rate"] <= MISS_TARGET for rate in rates.values()),
        "ms_per_image": round(1000 * spent / measured, 2),
        "preprocess_ms_per_image": round(1000 * preprocessing / measured, 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=200, help="images of each kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.per_kind, args.seed), indent=2))


if __name__ == "__main__":
    main()
