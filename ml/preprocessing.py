"""From a folder of images to a checked, de-duplicated, balanced, patient-level split, with a
report of everything that was done: the training side's preparation of a dataset.

Images are decoded with `ml.contract.decode_image`, the same checks serving applies.
"""

import hashlib
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.contract import ImageError, decode_image
from ml.datasets import CLASSES, Sample
from ml.versions import file_sha256


@dataclass
class Checked:
    kept: list[Sample] = field(default_factory=list)
    hashes: dict[Path, str] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)


def check_files(samples: list[Sample], min_size: int) -> Checked:
    """Keep the samples whose file decodes as a large enough RGB image, once per content."""
    checked = Checked()
    first_of: dict[str, Path] = {}
    for sample in samples:
        try:
            digest = file_sha256(sample.path)
            decode_image(sample.path, min_size)
        except (ImageError, OSError) as exc:
            checked.skipped.append({"path": str(sample.path), "reason": str(exc)})
            continue
        if digest in first_of:
            checked.duplicates.append(
                {"path": str(sample.path), "duplicate_of": str(first_of[digest])}
            )
            continue
        first_of[digest] = sample.path
        checked.hashes[sample.path] = digest
        checked.kept.append(sample)
    return checked


def dataset_hash(samples: list[Sample], hashes: dict[Path, str]) -> str:
    """Identifies the training data: the same files with the same labels give the same hash."""
    digest = hashlib.sha256()
    for content, label in sorted((hashes[s.path], s.label) for s in samples):
        digest.update(f"{content}:{label}\n".encode())
    return digest.hexdigest()


class SplitError(ValueError):
    pass


@dataclass
class Split:
    train: list[Sample]
    validation: list[Sample]
    test: list[Sample]

    def parts(self) -> dict[str, list[Sample]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def split_by_patient(
    samples: list[Sample], validation_fraction: float, test_fraction: float, seed: int
) -> Split:
    """Split by patient, so no patient has images on two sides; patients are stratified by
    whether they have malignant images, so every side gets both kinds where possible."""
    by_patient: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_patient[sample.group].append(sample)
    if len(by_patient) < 3:
        raise SplitError(
            f"only {len(by_patient)} patient(s): a patient-level split needs at least 3"
        )
    rng = random.Random(seed)
    parts: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    strata: dict[bool, list[str]] = defaultdict(list)
    for patient, patient_samples in sorted(by_patient.items()):
        strata[any(s.label == 1 for s in patient_samples)].append(patient)
    for patients in strata.values():
        rng.shuffle(patients)
        n_test = round(len(patients) * test_fraction)
        n_validation = round(len(patients) * validation_fraction)
        parts["test"] += patients[:n_test]
        parts["validation"] += patients[n_test : n_test + n_validation]
        parts["train"] += patients[n_test + n_validation :]
    # Small datasets: make sure validation and test hold a patient each, taken from train.
    for name in ("test", "validation"):
        if not parts[name] and len(parts["train"]) > 1:
            parts[name].append(parts["train"].pop())
    return Split(
        **{name: [s for p in sorted(ps) for s in by_patient[p]] for name, ps in parts.items()}
    )


def class_counts(samples: list[Sample]) -> dict[str, int]:
    counts = Counter(sample.label for sample in samples)
    return {name: counts.get(label, 0) for label, name in enumerate(CLASSES)}


def balance(
    samples: list[Sample], strategy: str, seed: int
) -> tuple[list[Sample], dict[int, float] | None]:
    """Balance the training samples: drop from the larger class, repeat from the smaller,
    or keep them all and return class weights for the loss."""
    by_label: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_label[sample.label].append(sample)
    sizes = {label: len(items) for label, items in by_label.items()}
    rng = random.Random(seed)
    if strategy == "undersample":
        smallest = min(sizes.values())
        return [s for items in by_label.values() for s in rng.sample(items, smallest)], None
    if strategy == "oversample":
        largest = max(sizes.values())
        balanced = []
        for items in by_label.values():
            balanced += items + rng.choices(items, k=largest - len(items))
        return balanced, None
    if strategy == "class_weights":
        total = sum(sizes.values())
        return samples, {label: total / (len(sizes) * n) for label, n in sizes.items()}
    return samples, None


def split_summary(samples: list[Sample]) -> dict[str, Any]:
    return {
        "images": len(samples),
        "patients": len({s.group for s in samples}),
        "classes": class_counts(samples),
    }


@dataclass
class Prepared:
    split: Split
    train: list[Sample]  # after balancing
    class_weights: dict[int, float] | None
    report: dict[str, Any]


def prepare(
    samples: list[Sample],
    *,
    layout: str,
    min_size: int,
    balance_strategy: str,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
    max_images: int | None = None,
) -> Prepared:
    """Check, de-duplicate, split by patient and balance; with the report of every step."""
    seen = len(samples)
    if max_images is not None and seen > max_images:
        samples = random.Random(seed).sample(samples, max_images)
    checked = check_files(samples, min_size)
    if len({s.label for s in checked.kept}) < 2:
        raise SplitError(
            f"after skipping {len(checked.skipped)} unusable and {len(checked.duplicates)} "
            "duplicate files, fewer than two classes remain"
        )
    split = split_by_patient(checked.kept, validation_fraction, test_fraction, seed)
    train, weights = balance(split.train, balance_strategy, seed)
    report = {
        "layout": layout,
        "files_seen": seen,
        "files_considered": len(samples),
        "files_kept": len(checked.kept),
        "skipped": checked.skipped,
        "duplicates_removed": checked.duplicates,
        "dataset_sha256": dataset_hash(checked.kept, checked.hashes),
        "class_counts": class_counts(checked.kept),
        "balance": {
            "strategy": balance_strategy,
            "train_before": class_counts(split.train),
            "train_after": class_counts(train),
            "class_weights": (
                {CLASSES[label]: round(w, 4) for label, w in sorted(weights.items())}
                if weights
                else None
            ),
        },
        "splits": {name: split_summary(part) for name, part in split.parts().items()},
        "seed": seed,
    }
    return Prepared(split=split, train=train, class_weights=weights, report=report)


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    return path
