"""Model versions for the inference tests (trained briefly on synthetic data), and the
inference service running in-process against a real database."""

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI

from ml.config import Config
from ml.synthetic import generate
from tests.support.services import inference_app
from tests.support.tokens import test_verifier


def train_tiny_versions(root: Path, names: tuple[str, ...]) -> Path:
    """Train one small version per name (different seeds) into `root / "models"`."""
    from ml.conversion import convert_version
    from ml.train import train

    data = root / "data"
    generate(data, patients=10, images_per_patient=10, size=32, seed=11)
    for seed, name in enumerate(names, start=1):
        config = Config.model_validate(
            {
                "data": {"path": str(data), "layout": "idc", "min_size": 16},
                "model": {"input_size": 32, "filters": [8, 16, 16], "dense_units": 8},
                "training": {"epochs": 2, "batch_size": 16, "seed": seed},
                "output": {"models_dir": str(root / "models"), "mlflow_experiment": "tests"},
            }
        )
        train(config, version=name, quiet=True)
        # Converted once here, as registration would do in every test that registers it.
        convert_version(root / "models" / name)
    return root / "models"


def copy_versions(source: Path, target: Path, names: list[str]) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copytree(source / name, target / name)
    return target


@asynccontextmanager
async def running_inference(
    database_url: str, models_dir: Path, **overrides: object
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = inference_app(database_url, models_dir=models_dir, **overrides)
    app.state.token_verifier = test_verifier()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://inference", timeout=60
        ) as client:
            yield app, client
