"""File checks, de-duplication, the patient-level split, balancing, the report, and the
single-image function shared with serving."""

import io
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.contract import ImageError, decode_image, preprocess_image
from ml.datasets import Sample, read_dataset
from ml.preprocessing import (
    SplitError,
    balance,
    check_files,
    prepare,
    split_by_patient,
)
from tests.support.images import idc_tree, write_png


def test_bad_files_are_skipped_with_the_reason_for_each(tmp_path):
    good = write_png(tmp_path / "good.png", size=40)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    grey = write_png(tmp_path / "grey.png", mode="L", seed=3)
    tiny = write_png(tmp_path / "tiny.png", size=10, seed=4)
    samples = [Sample(p, 0, "x") for p in (good, corrupt, truncated, text, grey, tiny)]

    checked = check_files(samples, min_size=32)
    assert [s.path for s in checked.kept] == [good]
    reasons = {Path(s["path"]).name: s["reason"] for s in checked.skipped}
    assert set(reasons) == {"corrupt.png", "truncated.png", "notes.png", "grey.png", "tiny.png"}
    assert "not an RGB image (mode L)" in reasons["grey.png"]
    assert "too small (10x10, minimum 32)" in reasons["tiny.png"]
    assert "not an image" in reasons["notes.png"]
    assert "decoded" in reasons["truncated.png"] or "not an image" in reasons["truncated.png"]


def test_exact_duplicates_are_removed_keeping_the_first(tmp_path):
    first = write_png(tmp_path / "a" / "first.png", seed=1)
    copy = tmp_path / "b" / "copy.png"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    other = write_png(tmp_path / "c" / "other.png", seed=2)
    checked = check_files([Sample(p, 1, "g") for p in (first, copy, other)], min_size=8)
    assert [s.path for s in checked.kept] == [first, other]
    assert checked.duplicates == [{"path": str(copy), "duplicate_of": str(first)}]


def test_rgba_and_palette_images_are_used_as_rgb(tmp_path):
    rgba = write_png(tmp_path / "rgba.png", mode="RGBA")
    palette = write_png(tmp_path / "p.png", mode="P", seed=5)
    for path in (rgba, palette):
        assert decode_image(path).mode == "RGB"


def test_a_decompression_bomb_is_refused(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (9000, 9000)).save(buffer, "PNG")  # 81 Mpx of nothing: a few KB
    with pytest.raises(ImageError, match="too large"):
        decode_image(buffer.getvalue())


def test_the_single_image_function_gives_model_input(tmp_path):
    path = write_png(tmp_path / "x.png", size=50)
    from_path = preprocess_image(decode_image(path), 128)
    from_bytes = preprocess_image(decode_image(path.read_bytes()), 128)
    assert from_path.shape == (128, 128, 3) and from_path.dtype == np.float32
    assert from_path.min() >= 0.0 and from_path.max() <= 1.0
    np.testing.assert_array_equal(from_path, from_bytes)


def _patients(n_patients: int, per_patient: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    samples = []
    for patient in range(n_patients):
        malignant = rng.random() < 0.5
        for index in range(per_patient):
            label = int(malignant and rng.random() < 0.7)
            samples.append(Sample(Path(f"/p{patient}/{index}.png"), label, f"p{patient}"))
    return samples


@pytest.mark.parametrize("seed", range(8))
def test_the_split_never_puts_a_patient_on_two_sides(seed):
    samples = _patients(n_patients=3 + seed * 5, per_patient=1 + seed, seed=seed)
    split = split_by_patient(samples, 0.15, 0.15, seed)
    groups = {name: {s.group for s in part} for name, part in split.parts().items()}
    assert not groups["train"] & groups["validation"]
    assert not groups["train"] & groups["test"]
    assert not groups["validation"] & groups["test"]
    assert sum(len(part) for part in split.parts().values()) == len(samples)
    assert all(groups.values())  # every side has at least one patient


def test_the_split_is_stratified_and_reproducible():
    samples = _patients(n_patients=60, per_patient=5, seed=1)
    first = split_by_patient(samples, 0.2, 0.2, seed=3)
    assert first == split_by_patient(samples, 0.2, 0.2, seed=3)
    for part in (first.validation, first.test):
        assert {s.label for s in part} == {0, 1}
    assert first != split_by_patient(samples, 0.2, 0.2, seed=4)


def test_too_few_patients_cannot_be_split():
    with pytest.raises(SplitError, match="only 2 patient"):
        split_by_patient(_patients(2, 5, 0), 0.15, 0.15, 0)


def test_balancing_strategies():
    samples = [Sample(Path(f"/{i}"), int(i < 10), f"g{i}") for i in range(40)]  # 10 vs 30
    under, weights = balance(samples, "undersample", seed=0)
    assert Counter(s.label for s in under) == {0: 10, 1: 10} and weights is None
    over, _ = balance(samples, "oversample", seed=0)
    assert Counter(s.label for s in over) == {0: 30, 1: 30}
    kept, weights = balance(samples, "class_weights", seed=0)
    assert kept == samples
    assert weights == pytest.approx({0: 40 / (2 * 30), 1: 40 / (2 * 10)})
    assert balance(samples, "none", seed=0) == (samples, None)


def test_prepare_reports_every_step(tmp_path):
    root = idc_tree(tmp_path / "data", patients=8, per_class=3)
    (root / "1000" / "0" / "broken.png").write_bytes(b"not a png")
    shutil.copy(root / "1001" / "1" / "p1_0.png", root / "1001" / "1" / "zz-copy.png")
    samples, layout = read_dataset(root)
    prepared = prepare(
        samples,
        layout=layout,
        min_size=16,
        balance_strategy="undersample",
        validation_fraction=0.25,
        test_fraction=0.25,
        seed=1,
    )
    report = prepared.report
    assert report["files_seen"] == 50
    assert report["files_kept"] == 48
    assert [Path(s["path"]).name for s in report["skipped"]] == ["broken.png"]
    assert [Path(d["path"]).name for d in report["duplicates_removed"]] == ["zz-copy.png"]
    assert report["class_counts"] == {"benign": 24, "malignant": 24}
    splits = report["splits"]
    assert sum(part["images"] for part in splits.values()) == 48
    assert sum(part["patients"] for part in splits.values()) == 8
    after = report["balance"]["train_after"]
    assert after["benign"] == after["malignant"]
    assert len(report["dataset_sha256"]) == 64
