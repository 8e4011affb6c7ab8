"""The demonstration model, so that a new installation serves at once.

The demo version is shipped in `models/demo-synthetic-1/` (made by `make demo-model`, kept out
of Git LFS so that a plain clone has it). `make run` copies it into its models folder when that
folder has no version. When the shipped copy cannot be used (a clone without git-lfs leaves an
LFS pointer where a file should be, or a file does not match its card's checksum), it says so
and trains the same recipe instead: synthetic data, then `ml.train` with `ml/demo.yaml`.

    python -m ml.bootstrap [--models-dir var/models] [--data var/datasets/synthetic]
    python -m ml.bootstrap --rebuild --models-dir models   # what `make demo-model` runs
    python -m ml.bootstrap --parity-sample --models-dir models --data DIR

`--parity-sample` adds the parity images (`ml.conversion`) to each version of the folder
that lacks them, from the validation split of its training data in DIR (the demo's synthetic
data are made again from their seed when DIR has none), then converts the version to the
faster runtimes and records them on its card.
"""

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ml.config import load_config
from ml.synthetic import generate
from ml.versions import (
    CARD_FILE,
    MODEL_FILE,
    ModelVersionError,
    artefact_problem,
    file_sha256,
    list_versions,
    read_card,
)

ROOT = Path(__file__).resolve().parents[1]
DEMO_VERSION = "demo-synthetic-1"
DEMO_CONFIG = Path(__file__).with_name("demo.yaml")
SHIPPED_MODELS_DIR = ROOT / "models"
# Generated at the model's input size, so no pixel is invented by resizing.
DEMO_DATA = {"patients": 32, "images_per_patient": 20, "size": 128, "seed": 7}
# What git writes in place of a Git LFS file when git-lfs is not installed.
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"


def say(message: str) -> None:
    print(f"[demo model] {message}", flush=True)


def is_lfs_pointer(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX


def shipped_problem(folder: Path) -> str | None:
    """Why the shipped demo version in `folder` cannot be served, or None when it can."""
    card_path, model_path = folder / CARD_FILE, folder / MODEL_FILE
    for path in (card_path, model_path):
        if not path.is_file():
            return f"{path} is missing"
        if is_lfs_pointer(path):
            return (
                f"{path} is a Git LFS pointer, not the file (this clone was made without "
                "git-lfs; `git lfs install && git lfs pull` fetches it)"
            )
    try:
        expected = json.loads(card_path.read_text())["model_sha256"]
    except (ValueError, KeyError) as exc:
        return f"{card_path} is not a model card ({exc})"
    if file_sha256(model_path) != expected:
        return f"{model_path} does not match the checksum on its card"
    try:
        card = read_card(folder)
    except ModelVersionError as exc:
        return str(exc)
    return artefact_problem(folder, card)


def copy_version(source: Path, models_dir: Path) -> Path:
    """Copy a version folder in whole or not at all: a half-copied folder is never a version."""
    target = models_dir / source.name
    staging = models_dir / f".{source.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    staging.rename(target)
    return target


def train_demo(
    models_dir: Path, data_dir: Path, progress: Callable[[str], None] = say
) -> dict[str, object]:
    """Train the demo recipe into `models_dir / DEMO_VERSION`."""
    from ml.train import train

    started = time.monotonic()
    generate_demo_data(data_dir, progress)
    config = load_config(DEMO_CONFIG, data_dir)
    config.output.models_dir = models_dir
    result = train(config, version=DEMO_VERSION, progress=progress)
    return {
        "trained": True,
        "version": result.version,
        "folder": str(result.folder),
        "seconds": round(time.monotonic() - started, 1),
        "test_metrics": result.card.metrics.model_dump(mode="json"),
    }


def bootstrap(
    models_dir: Path,
    data_dir: Path,
    shipped_dir: Path = SHIPPED_MODELS_DIR,
    progress: Callable[[str], None] = say,
) -> dict[str, object]:
    """Provide the demo model unless `models_dir` has a version. Returns what was done."""
    existing = list_versions(models_dir)
    if existing:
        return {"trained": False, "versions": [p.name for p in existing]}
    models_dir.mkdir(parents=True, exist_ok=True)
    shipped = shipped_dir / DEMO_VERSION
    problem = shipped_problem(shipped)
    if problem is None:
        folder = copy_version(shipped, models_dir)
        progress(f"copied the shipped demo model to {folder}")
        return {"trained": False, "copied": str(folder), "version": DEMO_VERSION}
    progress(f"cannot use the shipped demo model: {problem}")
    progress("training it instead (a few minutes on two cores)")
    return train_demo(models_dir, data_dir, progress)


def generate_demo_data(data_dir: Path, progress: Callable[[str], None] = say) -> None:
    """The demo's synthetic dataset in `data_dir`, made from its seed unless it is there."""
    if (data_dir / "SYNTHETIC.json").is_file():
        return
    progress(
        f"generating {DEMO_DATA['patients'] * DEMO_DATA['images_per_patient']} synthetic "
        f"images of {DEMO_DATA['patients']} patients in {data_dir}"
    )
    generate(
        data_dir,
        DEMO_DATA["patients"],
        DEMO_DATA["images_per_patient"],
        DEMO_DATA["size"],
        DEMO_DATA["seed"],
    )


def add_parity_samples(models_dir: Path, data_dir: Path) -> dict[str, object]:
    """Add the parity images to each version lacking them, then convert it (`ml.conversion`)."""
    from ml.conversion import PARITY_FILE, convert_version, validation_images, write_parity_sample

    done: dict[str, object] = {}
    for folder in list_versions(models_dir):
        card = read_card(folder)
        if not (folder / PARITY_FILE).is_file():
            if card.version == DEMO_VERSION:
                generate_demo_data(data_dir)
            write_parity_sample(folder, validation_images(card, data_dir))
            say(f"added {PARITY_FILE} to {folder}")
        card = convert_version(folder)
        done[card.version] = {
            name: {"passed": r.passed, "max_abs_diff": r.max_abs_diff}
            for name, r in (card.runtimes or {}).items()
        }
    return {"parity_samples": done}


def rebuild(models_dir: Path, data_dir: Path) -> dict[str, object]:
    """Train the demo version afresh, replacing the one in `models_dir` (`make demo-model`)."""
    shutil.rmtree(models_dir / DEMO_VERSION, ignore_errors=True)
    shutil.rmtree(data_dir, ignore_errors=True)  # the data are made again from the seed
    done = train_demo(models_dir, data_dir)
    from ml.conversion import convert_version

    say("converting it to the faster runtimes")
    convert_version(models_dir / DEMO_VERSION)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Provide the demo model if there is none.")
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--data", type=Path, default=Path("var/datasets/synthetic"))
    parser.add_argument(
        "--shipped",
        type=Path,
        default=SHIPPED_MODELS_DIR,
        help="the folder of shipped versions, where the demo version is copied from",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="train the demo version again, replacing it"
    )
    parser.add_argument(
        "--parity-sample",
        action="store_true",
        help="add the parity images to each version lacking them, then convert it",
    )
    args = parser.parse_args(argv)
    if args.parity_sample:
        done = add_parity_samples(args.models_dir, args.data)
    elif args.rebuild:
        done = rebuild(args.models_dir, args.data)
    else:
        done = bootstrap(args.models_dir, args.data, args.shipped)
    print(json.dumps(done), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
