"""Model version folders: `<models_dir>/<version>/` holds `model.keras`, `model_card.json`,
the out-of-distribution statistics (`ood.npz`, when the card names them) and `reports/`
(preprocessing, exploration, training history, evaluation and its plots).

No TensorFlow and no training code: the inference service's registry reads versions with it.
"""

import hashlib
import os
from pathlib import Path

from pydantic import ValidationError

from ml.card import ModelCard

MODEL_FILE = "model.keras"
CARD_FILE = "model_card.json"


class ModelVersionError(ValueError):
    pass


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_version(folder: Path) -> bool:
    return (folder / MODEL_FILE).is_file() and (folder / CARD_FILE).is_file()


def list_versions(models_dir: Path) -> list[Path]:
    if not models_dir.is_dir():
        return []
    return sorted(p for p in models_dir.iterdir() if p.is_dir() and is_version(p))


def newest_version(models_dir: Path) -> Path:
    versions = list_versions(models_dir)
    if not versions:
        raise ModelVersionError(f"no model version in {models_dir}; train one first")
    return max(versions, key=lambda p: read_card(p).created_at)


def read_card(folder: Path) -> ModelCard:
    path = folder / CARD_FILE
    if not path.is_file():
        raise ModelVersionError(f"{folder} is not a model version (no {CARD_FILE})")
    try:
        return ModelCard.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ModelVersionError(f"{path} is not a valid model card: {exc}") from exc


def artefact_problem(folder: Path, card: ModelCard) -> str | None:
    """Why a file the card names beside the model (the out-of-distribution statistics) is
    missing or not the one trained, or None when each is."""
    ood = card.out_of_distribution
    if ood is None:
        return None
    path = folder / ood.file
    if not path.is_file():
        return f"{path} is missing"
    if file_sha256(path) != ood.sha256:
        return f"{path} does not match the checksum on its card"
    return None


def write_atomically(path: Path, data: bytes) -> Path:
    """Write `data` to a staging file beside `path`, then rename it over `path`: a reader
    sees the old file or the new one, never a part of either."""
    staging = path.with_name(f".{path.name}.partial")
    try:
        with staging.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)
    return path


def write_card(folder: Path, card: ModelCard) -> Path:
    return write_atomically(folder / CARD_FILE, (card.model_dump_json(indent=2) + "\n").encode())
