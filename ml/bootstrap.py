"""The demonstration model, made when there is none: synthetic data, then `ml.train` with
`ml/demo.yaml`. What `make run` calls before the services start.

    python -m ml.bootstrap [--models-dir var/models] [--data var/datasets/synthetic]
"""

import argparse
import json
import sys
import time
from pathlib import Path

from ml.config import load_config
from ml.synthetic import generate
from ml.versions import list_versions

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")
DEMO_DATA = {"patients": 48, "images_per_patient": 30, "size": 64, "seed": 7}


def bootstrap(models_dir: Path, data_dir: Path, quiet: bool = True) -> dict:
    """Train the demo model unless `models_dir` has a version. Returns what was done."""
    existing = list_versions(models_dir)
    if existing:
        return {"trained": False, "versions": [p.name for p in existing]}
    from ml.train import train

    started = time.monotonic()
    if not (data_dir / "SYNTHETIC.json").is_file():
        generate(
            data_dir,
            DEMO_DATA["patients"],
            DEMO_DATA["images_per_patient"],
            DEMO_DATA["size"],
            DEMO_DATA["seed"],
        )
    config = load_config(DEMO_CONFIG, data_dir)
    config.output.models_dir = models_dir
    result = train(config, version="demo-synthetic-1", quiet=quiet)
    return {
        "trained": True,
        "version": result.version,
        "folder": str(result.folder),
        "seconds": round(time.monotonic() - started, 1),
        "test_metrics": result.card["metrics"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the demo model if there is none.")
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--data", type=Path, default=Path("var/datasets/synthetic"))
    args = parser.parse_args(argv)
    print(json.dumps(bootstrap(args.models_dir, args.data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
