"""The demonstration model: shipped in `models/` outside Git LFS, copied by `make run` in a
moment, and trained by the same recipe only when the shipped copy cannot be used. The fallback
test here is the only one in the suite that trains the demo model, and its duration (in the
slowest-tests list at the end of every run) is how long a first `make run` takes without it."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from devstack import ROOT
from ml.bootstrap import (
    DEMO_VERSION,
    LFS_POINTER_PREFIX,
    SHIPPED_MODELS_DIR,
    bootstrap,
    shipped_problem,
)
from ml.versions import file_sha256, list_versions

SHIPPED = SHIPPED_MODELS_DIR / DEMO_VERSION
LFS_POINTER = (LFS_POINTER_PREFIX + b"v1\noid sha256:" + b"0" * 64 + b"\nsize 1300000\n").decode()


def test_the_shipped_demo_model_is_whole_and_says_what_it_is():
    assert shipped_problem(SHIPPED) is None
    card = json.loads((SHIPPED / "model_card.json").read_text())
    assert card["version"] == DEMO_VERSION
    assert card["input"]["size"] == [128, 128, 3]  # the seed architecture's input
    assert card["model_sha256"] == file_sha256(SHIPPED / "model.keras")
    assert card["training_data"]["synthetic"] is True
    assert "not a medical device" in card["warning"]
    assert card["metrics"]["roc_auc"] > 0.8
    assert card["out_of_distribution"]["sha256"] == file_sha256(SHIPPED / "ood.npz")
    assert card["calibration"] and card["indeterminate_band"]
    # Converted, each conversion checked against TensorFlow and the file the one checked.
    for name in ("litert", "onnxruntime"):
        record = card["runtimes"][name]
        assert record["passed"] and record["max_abs_diff"] <= 1e-4, name
        assert record["sha256"] == file_sha256(SHIPPED / record["file"])
        assert record["parity_source"] == "parity_sample.npz"
    # Made from the project's own files, not from a path on someone's machine.
    assert not os.path.isabs(card["training_data"]["path"])


def test_the_shipped_demo_model_is_kept_out_of_git_lfs():
    """A clone without git-lfs must get the real files; released models stay in LFS."""
    answer = subprocess.run(
        [
            "git",
            "check-attr",
            "filter",
            "--",
            f"models/{DEMO_VERSION}/model.keras",
            f"models/{DEMO_VERSION}/reports/evaluation-test/roc_curve.png",
            "models/released-1/model.keras",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert answer.stdout.splitlines() == [
        f"models/{DEMO_VERSION}/model.keras: filter: unspecified",
        f"models/{DEMO_VERSION}/reports/evaluation-test/roc_curve.png: filter: unspecified",
        "models/released-1/model.keras: filter: lfs",
    ]


def test_make_run_copies_the_shipped_model_without_training(tmp_path):
    said: list[str] = []
    started = time.monotonic()
    done = bootstrap(tmp_path / "models", tmp_path / "data", progress=said.append)
    assert done == {
        "trained": False,
        "copied": str(tmp_path / "models" / DEMO_VERSION),
        "version": DEMO_VERSION,
    }
    assert [p.name for p in list_versions(tmp_path / "models")] == [DEMO_VERSION]
    copied = tmp_path / "models" / DEMO_VERSION
    assert file_sha256(copied / "model.keras") == file_sha256(SHIPPED / "model.keras")
    assert not (tmp_path / "data").exists()  # no synthetic data made: nothing was trained
    assert not list((tmp_path / "models").glob(".*partial"))
    assert time.monotonic() - started < 60  # a copy, not a training run (which takes minutes)
    assert said == [f"copied the shipped demo model to {copied}"]


def test_a_models_folder_with_a_version_is_left_alone(tmp_path):
    shutil.copytree(SHIPPED, tmp_path / "models" / "mine")
    done = bootstrap(tmp_path / "models", tmp_path / "data", progress=pytest.fail)
    assert done == {"trained": False, "versions": ["mine"]}
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["mine"]


@pytest.mark.parametrize("broken", ["model.keras", "model_card.json"])
def test_an_lfs_pointer_is_named_as_such(tmp_path, broken):
    shipped = tmp_path / DEMO_VERSION
    shutil.copytree(SHIPPED, shipped)
    (shipped / broken).write_text(LFS_POINTER)
    problem = shipped_problem(shipped)
    assert problem is not None
    assert f"{shipped / broken} is a Git LFS pointer" in problem
    assert "git lfs pull" in problem


@pytest.mark.parametrize("changed", ["model.keras", "ood.npz"])
def test_a_changed_or_missing_model_file_or_statistics_are_refused(tmp_path, changed):
    shipped = tmp_path / DEMO_VERSION
    shutil.copytree(SHIPPED, shipped)
    with (shipped / changed).open("ab") as file:
        file.write(b"\0")
    assert shipped_problem(shipped) == (
        f"{shipped / changed} does not match the checksum on its card"
    )
    (shipped / changed).unlink()
    assert shipped_problem(shipped) == f"{shipped / changed} is missing"


def test_without_git_lfs_make_run_says_so_and_trains_the_demo_model(tmp_path):
    """A clone made without git-lfs: the launcher's own command says why it trains, shows
    each step and epoch with an estimate, and ends with the same recipe's model."""
    shipped_root = tmp_path / "clone-models"
    shutil.copytree(SHIPPED, shipped_root / DEMO_VERSION)
    (shipped_root / DEMO_VERSION / "model.keras").write_text(LFS_POINTER)
    started = time.monotonic()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "ml.bootstrap",
            "--models-dir",
            "models",
            "--data",
            "data",
            "--shipped",
            str(shipped_root),
        ],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        },
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.monotonic() - started
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    assert "is a Git LFS pointer" in lines[0] and "git lfs pull" in lines[0]
    assert lines[1] == "[demo model] training it instead (a few minutes on two cores)"
    assert any(line.startswith("[demo model] generating 640 synthetic images") for line in lines)
    epochs = [line for line in lines if line.startswith("[demo model] epoch ")]
    assert epochs and epochs[0].startswith("[demo model] epoch 1/10: loss ")
    assert all("s left" in line for line in epochs)
    done = json.loads(lines[-1])
    assert done["trained"] is True and done["version"] == DEMO_VERSION
    card = json.loads((tmp_path / "models" / DEMO_VERSION / "model_card.json").read_text())
    shipped_card = json.loads((SHIPPED / "model_card.json").read_text())
    assert card["input"]["size"] == [128, 128, 3]
    # The same synthetic data from the same seed as the shipped model's.
    assert card["training_data"]["sha256"] == shipped_card["training_data"]["sha256"]
    assert card["training"]["config"] == shipped_card["training"]["config"] | {
        "data": {**shipped_card["training"]["config"]["data"], "path": "data"}
    }
    assert card["metrics"]["roc_auc"] > 0.8
    print(f"demo model trained in {seconds:.1f} s ({len(epochs)} epochs)")
