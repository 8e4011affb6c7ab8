"""Readers for the dataset layouts people actually have. Each yields `Sample`s: the image
path, its label (0 benign, 1 malignant) and the patient (group) it comes from, which is
what keeps a patient's images on one side of the train/test split.

- `idc`: Kaggle "Breast Histopathology Images", `<patient_id>/<0|1>/*.png`
  (0 = no invasive ductal carcinoma, 1 = IDC);
- `breakhis`: BreakHis file names `SOB_<B|M>_<type>-<year>-<patient>-<magnification>-<seq>.png`
  anywhere below the root;
- `folders`: one folder per class, `benign/` and `malignant/` (or `0/` and `1/`), with the
  patient taken from a `<patient>_...` file-name prefix when there is one, else the file.
"""

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

CLASSES = ("benign", "malignant")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
LAYOUTS = ("idc", "breakhis", "folders")

# e.g. SOB_B_A-14-22549AB-40-001.png: class B, tumour type A, year 14, patient 22549AB.
BREAKHIS_NAME = re.compile(
    r"^SOB_(?P<cls>[BM])_(?P<type>[A-Z]+)-(?P<patient>\d+-[A-Za-z0-9]+)-(?P<mag>\d+)-(?P<seq>\d+)$"
)
FOLDER_LABELS = {"benign": 0, "0": 0, "malignant": 1, "1": 1}


class DatasetError(ValueError):
    """The dataset folder cannot be used: the message says what and where."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    group: str  # patient id


def _images_below(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_idc(root: Path) -> list[Sample]:
    samples = []
    for patient in sorted(p for p in root.iterdir() if p.is_dir()):
        for label in (0, 1):
            folder = patient / str(label)
            if folder.is_dir():
                samples += [Sample(p, label, patient.name) for p in _images_below(folder)]
    return samples


def read_breakhis(root: Path) -> list[Sample]:
    samples = []
    for path in _images_below(root):
        match = BREAKHIS_NAME.match(path.stem)
        if match:
            label = 1 if match["cls"] == "M" else 0
            samples.append(Sample(path, label, match["patient"]))
    return samples


def read_class_folders(root: Path) -> list[Sample]:
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = FOLDER_LABELS.get(folder.name.lower())
        if label is None:
            continue
        for path in _images_below(folder):
            group = path.stem.split("_", 1)[0] if "_" in path.stem else path.stem
            samples.append(Sample(path, label, group))
    return samples


READERS = {"idc": read_idc, "breakhis": read_breakhis, "folders": read_class_folders}


def detect_layout(root: Path) -> str:
    children = [p for p in root.iterdir() if p.is_dir()]
    if any((p / "0").is_dir() or (p / "1").is_dir() for p in children):
        return "idc"
    # BreakHis names carry label and patient, even when sorted into benign/malignant folders.
    if any(BREAKHIS_NAME.match(p.stem) for p in root.rglob("SOB_*")):
        return "breakhis"
    if {p.name.lower() for p in children} & set(FOLDER_LABELS):
        return "folders"
    raise DatasetError(
        f"{root}: no known layout (Kaggle IDC `<patient>/<0|1>/`, BreakHis `SOB_*` file "
        "names, or `benign/` and `malignant/` folders)"
    )


def read_dataset(root: Path, layout: str = "auto") -> tuple[list[Sample], str]:
    """Every image sample under `root`, and the layout used. Refuses a folder that does not
    exist, holds no images, or holds only one class."""
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"dataset path {root} is not a folder")
    if not any(root.iterdir()):
        raise DatasetError(f"dataset folder {root} is empty")
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in READERS:
        raise DatasetError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    samples = READERS[layout](root)
    if not samples:
        raise DatasetError(f"dataset folder {root} has no images in the {layout} layout")
    counts = Counter(sample.label for sample in samples)
    if len(counts) < 2:
        only = CLASSES[next(iter(counts))]
        raise DatasetError(
            f"dataset folder {root} has only one class ({only}, {counts[next(iter(counts))]} "
            "images); training needs benign and malignant images"
        )
    return samples, layout
