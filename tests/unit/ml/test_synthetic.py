"""The synthetic dataset: reproducible, in the IDC layout, with patients, and classes that
differ in the way the generator says (more and darker nuclei when malignant)."""

import numpy as np

from ml.contract import decode_image
from ml.datasets import read_dataset
from ml.synthetic import generate


def test_generation_is_reproducible_and_readable_as_idc(tmp_path):
    first = generate(tmp_path / "a", patients=6, images_per_patient=8, size=48, seed=3)
    generate(tmp_path / "b", patients=6, images_per_patient=8, size=48, seed=3)
    samples, layout = read_dataset(tmp_path / "a")
    assert layout == "idc" and len(samples) == 48
    assert len({s.group for s in samples}) == 6
    assert first["classes"]["benign"] + first["classes"]["malignant"] == 48
    for sample in samples[:5]:
        twin = tmp_path / "b" / sample.path.relative_to(tmp_path / "a")
        assert twin.read_bytes() == sample.path.read_bytes()
        assert decode_image(sample.path).size == (48, 48)


def test_malignant_patches_are_darker_on_average_but_the_classes_overlap(tmp_path):
    generate(tmp_path, patients=20, images_per_patient=20, size=48, seed=1)
    samples, _ = read_dataset(tmp_path)
    darkness = {0: [], 1: []}
    for sample in samples:
        pixels = np.asarray(decode_image(sample.path), dtype=float) / 255
        darkness[sample.label].append(1 - pixels.mean())
    benign, malignant = np.array(darkness[0]), np.array(darkness[1])
    assert malignant.mean() > benign.mean()
    # Not separable by brightness alone: the ranges overlap.
    assert malignant.min() < np.percentile(benign, 90)
