"""Model version folders: `<models_dir>/<version>/` holds `model.keras`, `model_card.json`
and `reports/` (preprocessing, exploration, training history, evaluation and its plots)."""

import json
from pathlib import Path
from typing import Any

MODEL_FILE = "model.keras"
CARD_FILE = "model_card.json"


class ModelVersionError(ValueError):
    pass


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
    return max(versions, key=lambda p: read_card(p)["created_at"])


def read_card(folder: Path) -> dict[str, Any]:
    path = folder / CARD_FILE
    if not path.is_file():
        raise ModelVersionError(f"{folder} is not a model version (no {CARD_FILE})")
    return json.loads(path.read_text())


def evaluate_version(
    folder: Path, data: Path | None, split: str, output: Path | None
) -> dict[str, Any]:
    """Evaluate a saved version on `data` (default: the dataset it was trained on), on the
    same patient-level split it was trained with, at its own decision threshold."""
    import keras

    from ml.datasets import read_dataset
    from ml.evaluate import evaluate, write_plots
    from ml.pipeline import predict_probabilities
    from ml.preprocessing import check_files, dataset_hash, split_by_patient, write_json

    card = read_card(folder)
    recipe = card["training_data"]
    data = data or Path(recipe["path"])
    samples, _ = read_dataset(data, recipe["layout"])
    checked = check_files(samples, recipe["min_size"])
    if split == "all":
        chosen = checked.kept
    else:
        parts = split_by_patient(
            checked.kept, recipe["validation_fraction"], recipe["test_fraction"], recipe["seed"]
        ).parts()
        chosen = parts[split]
    model = keras.models.load_model(folder / MODEL_FILE)
    labels, probabilities = predict_probabilities(model, chosen, card["input"]["size"][0])
    result = evaluate(
        labels, probabilities, card["decision_threshold"], card["threshold_rule"]["target"]
    )
    result["dataset"] = {
        "path": str(data),
        "split": split,
        "images": len(chosen),
        "same_as_training": dataset_hash(checked.kept, checked.hashes) == recipe["sha256"],
    }
    output = output or folder / "reports" / f"evaluation-{split}"
    write_json(output / "evaluation.json", result)
    result["plots"] = write_plots(labels, probabilities, card["decision_threshold"], output)
    at = result["at_threshold"]
    result["summary"] = {
        "version": card["version"],
        "split": split,
        "images": len(chosen),
        "accuracy": at["accuracy"],
        "sensitivity": at["sensitivity"],
        "specificity": at["specificity"],
        "roc_auc": at["roc_auc"],
        "output": str(output),
    }
    return result
