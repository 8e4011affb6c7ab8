"""Evaluation of a binary classifier's probabilities: the usual metrics, calibration, and a
decision threshold chosen for a target sensitivity; JSON and PNG plots.

    python -m ml.evaluate                       # the newest model, on its own test split
    python -m ml.evaluate --model var/models/VERSION --data PATH --split all
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from ml.datasets import CLASSES, read_dataset
from ml.preprocessing import check_files, dataset_hash, split_by_patient, write_json
from ml.versions import MODEL_FILE, ModelVersionError, newest_version, read_card


def threshold_for_sensitivity(y_true: np.ndarray, y_prob: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity (recall of malignant) reaches `target`: as
    few false alarms as possible while missing at most 1 - target of the cancers."""
    if not np.any(y_true == 1):
        return 0.5
    _, tpr, thresholds = skm.roc_curve(y_true, y_prob)
    reaching = np.flatnonzero(tpr >= target)
    threshold = float(thresholds[reaching[0]])
    return min(1.0, threshold)  # roc_curve's first threshold is +inf


def compute_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5, calibration_bins: int = 10
) -> dict[str, Any]:
    y_true = np.asarray(y_true).astype(int)
    y_prob = np.asarray(y_prob, dtype=float)
    y_pred = (y_prob >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    both_classes = len(np.unique(y_true)) == 2
    prob_true, prob_pred = (
        calibration_curve(y_true, y_prob, n_bins=calibration_bins, strategy="uniform")
        if both_classes
        else (np.array([]), np.array([]))
    )
    return {
        "threshold": round(float(threshold), 6),
        "support": {"benign": int(tn + fp), "malignant": int(tp + fn)},
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, zero_division=0)),
        "sensitivity": float(skm.recall_score(y_true, y_pred, zero_division=0)),
        "specificity": float(tn / (tn + fp)) if tn + fp else 0.0,
        "f1": float(skm.f1_score(y_true, y_pred, zero_division=0)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred))
        if both_classes
        else None,
        "roc_auc": float(skm.roc_auc_score(y_true, y_prob)) if both_classes else None,
        "brier_score": float(skm.brier_score_loss(y_true, y_prob, pos_label=1)),
        "confusion_matrix": {
            "labels": list(CLASSES),
            "rows_true_columns_predicted": [[int(tn), int(fp)], [int(fn), int(tp)]],
        },
        "calibration": {
            "bins": calibration_bins,
            "mean_predicted": [round(float(v), 6) for v in prob_pred],
            "fraction_malignant": [round(float(v), 6) for v in prob_true],
        },
    }


def evaluate(
    y_true: np.ndarray, y_prob: np.ndarray, threshold: float, target_sensitivity: float
) -> dict[str, Any]:
    """Metrics at the model's decision threshold and at 0.5, and the ROC curve's points."""
    return {
        "target_sensitivity": target_sensitivity,
        "at_threshold": compute_metrics(y_true, y_prob, threshold),
        "at_0_5": compute_metrics(y_true, y_prob, 0.5),
        "roc_curve": roc_points(y_true, y_prob),
    }


def roc_points(y_true: np.ndarray, y_prob: np.ndarray, max_points: int = 200) -> dict | None:
    """The ROC curve as data (so a UI can draw it), thinned to at most `max_points` while
    keeping both ends; None when the labels hold one class only."""
    y_true = np.asarray(y_true).astype(int)
    if len(np.unique(y_true)) != 2:
        return None
    fpr, tpr, thresholds = skm.roc_curve(y_true, np.asarray(y_prob, dtype=float))
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), max_points)).round().astype(int))
    return {
        "false_positive_rate": [round(float(v), 6) for v in fpr[keep]],
        "true_positive_rate": [round(float(v), 6) for v in tpr[keep]],
        # roc_curve's first threshold is +inf, which JSON cannot hold.
        "thresholds": [round(float(min(v, 1.0)), 6) for v in thresholds[keep]],
    }


def write_plots(y_true: np.ndarray, y_prob: np.ndarray, threshold: float, folder: Path) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    result = compute_metrics(y_true, y_prob, threshold)

    figure, axis = plt.subplots(figsize=(4.5, 4))
    matrix = np.array(result["confusion_matrix"]["rows_true_columns_predicted"])
    axis.imshow(matrix, cmap="Blues")
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(
            column,
            row,
            str(value),
            ha="center",
            va="center",
            color="white" if value > matrix.max() / 2 else "black",
        )
    axis.set_xticks([0, 1], CLASSES)
    axis.set_yticks([0, 1], CLASSES)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"Confusion matrix (threshold {threshold:.3f})")
    written.append(_save(figure, folder / "confusion_matrix.png"))

    if len(np.unique(y_true)) == 2:
        fpr, tpr, _ = skm.roc_curve(y_true, y_prob)
        figure, axis = plt.subplots(figsize=(4.5, 4))
        axis.plot(fpr, tpr, label=f"AUC {result['roc_auc']:.3f}")
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
        axis.set_xlabel("1 - specificity")
        axis.set_ylabel("sensitivity")
        axis.set_title("ROC curve")
        axis.legend(loc="lower right")
        written.append(_save(figure, folder / "roc_curve.png"))

        figure, axis = plt.subplots(figsize=(4.5, 4))
        calibration = result["calibration"]
        axis.plot(calibration["mean_predicted"], calibration["fraction_malignant"], marker="o")
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
        axis.set_xlabel("mean predicted probability")
        axis.set_ylabel("fraction malignant")
        axis.set_title(f"Reliability (Brier {result['brier_score']:.3f})")
        written.append(_save(figure, folder / "reliability.png"))
    return written


def _save(figure, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path.name


def evaluate_version(
    folder: Path, data: Path | None, split: str, output: Path | None
) -> dict[str, Any]:
    """Evaluate a saved version on `data` (default: the dataset it was trained on), on the
    same patient-level split it was trained with, at its own decision threshold."""
    import keras

    from ml.pipeline import predict_probabilities

    card = read_card(folder)
    recipe = card.training_data
    data = data or Path(recipe.path)
    samples, _ = read_dataset(data, recipe.layout)
    checked = check_files(samples, recipe.min_size)
    if split == "all":
        chosen = checked.kept
    else:
        parts = split_by_patient(
            checked.kept, recipe.validation_fraction, recipe.test_fraction, recipe.seed
        ).parts()
        chosen = parts[split]
    model = keras.models.load_model(folder / MODEL_FILE)
    labels, probabilities = predict_probabilities(model, chosen, card.input.side)
    if card.calibration is not None:  # the threshold was chosen on calibrated probabilities
        from ml.calibration import temperature_scaled

        probabilities = temperature_scaled(probabilities, card.calibration.temperature)
    result = evaluate(labels, probabilities, card.decision_threshold, card.threshold_rule.target)
    result["dataset"] = {
        "path": str(data),
        "split": split,
        "images": len(chosen),
        "same_as_training": dataset_hash(checked.kept, checked.hashes) == recipe.sha256,
    }
    output = output or folder / "reports" / f"evaluation-{split}"
    write_json(output / "evaluation.json", result)
    result["plots"] = write_plots(labels, probabilities, card.decision_threshold, output)
    at = result["at_threshold"]
    result["summary"] = {
        "version": card.version,
        "split": split,
        "images": len(chosen),
        "accuracy": at["accuracy"],
        "sensitivity": at["sensitivity"],
        "specificity": at["specificity"],
        "roc_auc": at["roc_auc"],
        "output": str(output),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate a model version on a dataset.")
    parser.add_argument("--model", type=Path, help="model version folder (default: newest)")
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--data", type=Path, help="dataset folder (default: the card's)")
    parser.add_argument("--split", choices=("test", "validation", "all"), default="test")
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write (default: a folder in the model's reports named after the split)",
    )
    args = parser.parse_args(argv)
    try:
        folder = args.model or newest_version(args.models_dir)
        result = evaluate_version(folder, args.data, args.split, args.output)
    except (ModelVersionError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
