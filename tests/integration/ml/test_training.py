"""The training pipeline end to end on synthetic data, through its command lines: a loadable
model and a complete card; evaluation and exploration; and each bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from devstack import ROOT
from ml.synthetic import generate
from tests.support.images import write_png

CARD_KEYS = {
    "version",
    "created_at",
    "model_file",
    "model_sha256",
    "classes",
    "input",
    "preprocessing",
    "decision_threshold",
    "threshold_rule",
    "training_data",
    "training",
    "metrics",
    "reports",
    "intended_use",
    "warning",
}


def run(module: str, *args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def train_cli(workspace: dict, data: Path, *extra: str) -> subprocess.CompletedProcess:
    return run(
        "ml.train",
        "--config",
        str(workspace["config"]),
        "--data",
        str(data),
        *extra,
        env=workspace["env"],
        cwd=workspace["root"],
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }
    generate(root / "data", patients=10, images_per_patient=10, size=32, seed=5)
    config = root / "tiny.yaml"
    config.write_text(
        "data: {path: unused, layout: idc, min_size: 16}\n"
        "model: {input_size: 32, filters: [8, 16, 32], dense_units: 8}\n"
        "training: {epochs: 2, batch_size: 16, early_stopping_patience: 2, seed: 1}\n"
        f"output: {{models_dir: {root / 'models'}, mlflow_experiment: tests}}\n"
    )
    return {"root": root, "env": env, "config": config}


@pytest.fixture(scope="module")
def trained(workspace):
    result = train_cli(workspace, workspace["root"] / "data", "--version", "tiny-1", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    return workspace["root"] / "models" / "tiny-1", json.loads(result.stdout)


def test_training_writes_a_loadable_model_and_a_complete_card(trained, workspace):
    import keras

    from ml.contract import decode_image, preprocess_image

    folder, printed = trained
    card = json.loads((folder / "model_card.json").read_text())
    assert set(card) >= CARD_KEYS
    assert card["version"] == "tiny-1" == printed["version"]
    assert card["classes"] == ["benign", "malignant"]
    assert card["input"]["size"] == [32, 32, 3]
    # The synthetic data declare their scale (100 um across a patch), and the card keeps it.
    assert (card["input"]["microns_per_pixel"], card["input"]["patch_px"]) == (100 / 32, 32)
    assert card["input"]["scale_source"].startswith("ml.synthetic:")
    assert card["training_data"]["synthetic"] is True
    assert "not a medical device" in card["warning"]
    assert card["training_data"]["sha256"] and card["training_data"]["images"] == 100
    for key in ("accuracy", "sensitivity", "specificity", "roc_auc", "brier_score", "f1"):
        assert key in card["metrics"]
    assert card["training"]["epochs_run"] <= 2
    for report in card["reports"].values():
        assert (folder / report).is_file(), report
    assert {"confusion_matrix.png", "roc_curve.png", "reliability.png"} <= {
        p.name for p in (folder / "reports" / "evaluation-test").iterdir()
    }

    model = keras.models.load_model(folder / "model.keras")
    image = next((workspace["root"] / "data").glob("*/1/*.png"))
    batch = preprocess_image(decode_image(image), 32)[None]
    probability = float(model.predict(batch, verbose=0)[0, 0])
    assert 0.0 <= probability <= 1.0
    assert model.get_layer("last_conv").filters == 32  # where Grad-CAM reads from
    from ml.versions import file_sha256

    assert card["model_sha256"] == file_sha256(folder / "model.keras")
    # Chosen on validation: the temperature, the band and the out-of-distribution threshold.
    assert card["calibration"]["method"] == "temperature" and card["calibration"]["bins"] == 10
    assert card["calibration"]["temperature"] > 0
    assert card["indeterminate_band"]["chosen_on"] == "validation"
    assert 0 <= card["indeterminate_band"]["half_width"] <= 1
    ood = card["out_of_distribution"]
    assert (ood["method"], ood["layer"], ood["quantile"]) == ("mahalanobis", "pool", 0.99)
    assert file_sha256(folder / ood["file"]) == ood["sha256"]


def test_the_run_is_in_mlflow(trained, workspace):
    import mlflow

    folder, _ = trained
    card = json.loads((folder / "model_card.json").read_text())
    mlflow.set_tracking_uri(workspace["env"]["MLFLOW_TRACKING_URI"])
    run = mlflow.get_run(card["training"]["mlflow_run_id"])
    assert run.data.params["model.input_size"] == "32"
    assert "test_roc_auc" in run.data.metrics
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_loss")
    assert len(history) == card["training"]["epochs_run"]


def test_evaluate_reproduces_the_test_metrics_of_the_card(trained, workspace):
    folder, _ = trained
    result = run("ml.evaluate", "--model", str(folder), env=workspace["env"], cwd=workspace["root"])
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    card = json.loads((folder / "model_card.json").read_text())
    assert summary["images"] == card["metrics"]["images"]
    assert summary["roc_auc"] == pytest.approx(card["metrics"]["roc_auc"], abs=1e-6)
    # At the threshold, which was chosen on calibrated probabilities: evaluated on them too.
    for key in ("accuracy", "sensitivity", "specificity"):
        assert summary[key] == pytest.approx(card["metrics"][key], abs=1e-9), key
    written = json.loads((folder / "reports" / "evaluation-test" / "evaluation.json").read_text())
    assert written["dataset"]["same_as_training"] is True
    roc = written["roc_curve"]
    assert roc["false_positive_rate"][-1] == roc["true_positive_rate"][-1] == 1.0


def test_explore_writes_its_report(workspace):
    output = workspace["root"] / "exploration"
    result = run(
        "ml.explore_data",
        "--data",
        str(workspace["root"] / "data"),
        "--output",
        str(output),
        env=workspace["env"],
        cwd=workspace["root"],
    )
    assert result.returncode == 0, result.stderr
    stats = json.loads((output / "exploration.json").read_text())
    assert stats["images"] == 100 and stats["patients"] == 10
    assert stats["image_sizes"] == {"32x32": 100}
    assert stats["images_per_patient"]["patients_by_count"] == {"10": 10}
    assert len(stats["channels"]["mean"]) == 3
    assert (output / "samples.png").is_file() and (output / "overview.png").is_file()
    assert "![samples](samples.png)" in (output / "report.md").read_text()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "nowhere", "does not exist"),
        (lambda root: (root / "empty").mkdir() or root / "empty", "is empty"),
        (lambda root: write_png(root / "one" / "p1" / "0" / "a.png").parents[2], "only one class"),
    ],
    ids=["missing", "empty", "one-class"],
)
def test_unusable_datasets_exit_non_zero_saying_what_and_where(workspace, tmp_path, make, message):
    data = make(tmp_path)
    result = train_cli(workspace, data)
    assert result.returncode == 2
    assert message in result.stderr and str(data) in result.stderr


def test_a_dataset_without_a_scale_is_refused_when_the_config_requires_one(workspace, tmp_path):
    data = tmp_path / "data"
    for seed, patient in enumerate(("p1", "p1", "p2", "p2")):
        write_png(data / patient / str(seed % 2) / f"{patient}_{seed}.png", seed=seed)
    config = tmp_path / "strict.yaml"
    tiny = workspace["config"].read_text()
    config.write_text(tiny.replace("min_size: 16", "require_scale: true"))
    result = train_cli({**workspace, "config": config}, data)
    assert result.returncode == 2
    assert "the idc layout" in result.stderr and "require_scale is true" in result.stderr


def test_a_bad_config_key_exits_non_zero_naming_it(workspace, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("data: {path: x}\ntraining: {epochs: lots}\n")
    result = run("ml.train", "--config", str(config), env=workspace["env"], cwd=workspace["root"])
    assert result.returncode == 2 and "training.epochs" in result.stderr


def test_unreadable_files_are_listed_and_skipped(workspace, tmp_path):
    data = tmp_path / "data"
    generate(data, patients=8, images_per_patient=6, size=32, seed=9)
    broken = next(data.glob("*/0/*.png"))
    broken.write_bytes(b"\x89PNG broken")
    result = train_cli(workspace, data, "--version", "with-bad-file", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(broken) in result.stderr  # listed while training
    report = json.loads(
        (
            workspace["root"] / "models" / "with-bad-file" / "reports" / "preprocessing.json"
        ).read_text()
    )
    assert [s["path"] for s in report["skipped"]] == [str(broken)]
    assert report["files_kept"] == report["files_seen"] - 1
    assert np.isfinite(json.loads(result.stdout)["test_metrics"]["brier_score"])


def test_mlflow_artifacts_stay_beside_the_tracking_store(trained, workspace):
    assert (workspace["root"] / "artifacts").is_dir()
    assert not (workspace["root"] / "mlruns").exists()
    assert not (ROOT / "mlruns").exists()
