"""Readers for the dataset layouts people actually have. Each yields `Sample`s: the image
path, its label (0 benign, 1 malignant) and the patient (group) it comes from, which is
what keeps a patient's images on one side of the train/test split.

- `idc`: Kaggle "Breast Histopathology Images", `<patient_id>/<0|1>/*.png`
  (0 = no invasive ductal carcinoma, 1 = IDC);
- `breakhis`: BreakHis file names `SOB_<B|M>_<type>-<year>-<patient>-<magnification>-<seq>.png`
  anywhere below the root;
- `folders`: one folder per class, `benign/` and `malignant/` (or `0/` and `1/`), with the
  patient taken from a `<patient>_...` file-name prefix when there is one, else the file.

Each layout also says what it knows of its scale (`LAYOUT_SCALES`), and `dataset_scale` gives
the scale a model trained on a folder works at: the `data.microns_per_pixel` setting, else what
the layout (or `ml.synthetic`'s `SYNTHETIC.json`) says, else unknown.
"""

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ml.synthetic import SCALE_SOURCE as SYNTHETIC_SCALE_SOURCE
from ml.synthetic import microns_per_pixel as synthetic_microns_per_pixel

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


# --- Scale -------------------------------------------------------------------------------
# What each layout says of the physical size of its pixels. A number is written here only
# when a source confirms it; otherwise the layout needs the `data.microns_per_pixel` setting.
#
# idc: the Kaggle "Breast Histopathology Images" page says the 277,524 patches of 50 x 50 px
#   were cut from 162 whole-mount slides "scanned at 40x"
#   (https://www.kaggle.com/paultimothymooney/breast-histopathology-images, as quoted in
#   https://www.github.com/sayakpaul/Breast-Cancer-Detection-using-Deep-Learning). How the 40x
#   scans were reduced before the patches were cut is described in Cruz-Roa et al. 2014
#   (SPIE 9041, 904103, https://doi.org/10.1117/12.2043872) and Janowczyk & Madabhushi 2016
#   (J Pathol Inform 7:29, https://doi.org/10.4103/2153-3539.186902; use case 6,
#   http://www.andrewjanowczyk.com/use-case-6-invasive-ductal-carcinoma-idc-segmentation/),
#   but no stored copy of either that we could read states the reduction or the um per pixel:
#   the copies reachable here stop at the abstract or the introduction. The one statement found
#   is a third party's ("Tiling small patch with 50*50 at 2.5x magnification",
#   https://github.com/gatsby2016/Fast-WSI-Prediction), a magnification, not a pixel size, and
#   not the authors'. So the scale is not written down here: IDC needs the setting.
# breakhis: each file name carries the magnification (40, 100, 200 or 400 X), but that is the
#   microscope's total magnification (a 4x objective behind a 10x eyepiece for "40X", as
#   https://github.com/kaiko-ai/eva/issues/818 points out), and the one um-per-pixel figure
#   found (kaiko-ai/eva docs/datasets/breakhis.md: "40x (0.25)") reads "40X" as a 40x scan,
#   which that issue disputes. No source confirms it: BreakHis needs the setting, and a folder
#   that mixes magnifications has no single scale at all.
# folders: your own images; only you know their scale.


@dataclass(frozen=True)
class LayoutScale:
    """What a layout says of its scale: um per pixel and the patches' side, where known."""

    microns_per_pixel: float | None
    patch_px: int | None
    note: str


LAYOUT_SCALES = {
    "idc": LayoutScale(
        None,
        50,
        "the idc layout (Kaggle Breast Histopathology Images, 50x50 patches of slides scanned "
        "at 40x) does not say how the scans were reduced before the patches were cut: no "
        "stored source of Cruz-Roa et al. 2014 or Janowczyk & Madabhushi 2016 confirms the "
        "um per pixel",
    ),
    "breakhis": LayoutScale(
        None,
        None,
        "the breakhis layout names a magnification (40/100/200/400X, the microscope's total) "
        "but no source confirms its um per pixel",
    ),
    "folders": LayoutScale(None, None, "the folders layout says nothing of its scale"),
}
SETTING_SOURCE = "data.microns_per_pixel setting"


@dataclass(frozen=True)
class Scale:
    """The scale a model trained on a dataset works at, and where that came from."""

    microns_per_pixel: float | None
    patch_px: int | None
    source: str

    @property
    def known(self) -> bool:
        return self.microns_per_pixel is not None


def breakhis_magnifications(samples: list[Sample]) -> list[int]:
    """The magnifications (40, 100, 200, 400) that BreakHis file names carry, sorted."""
    found = set()
    for sample in samples:
        match = BREAKHIS_NAME.match(sample.path.stem)
        if match:
            found.add(int(match["mag"]))
    return sorted(found)


def synthetic_scale(root: Path) -> LayoutScale | None:
    """The scale `ml.synthetic` declares for the dataset in `root`, None when it is not one."""
    summary_path = root / "SYNTHETIC.json"
    if not summary_path.is_file():
        return None
    try:
        size = int(json.loads(summary_path.read_text(encoding="utf-8"))["image_size"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{summary_path} does not say its image_size ({exc})") from exc
    return LayoutScale(synthetic_microns_per_pixel(size), size, SYNTHETIC_SCALE_SOURCE)


def measured_patch_px(samples: list[Sample], limit: int = 200) -> int | None:
    """The side of the dataset's patches when (the first `limit` of) them are squares of one
    size, else None. Reads image headers only."""
    sides = set()
    for sample in samples[:limit]:
        try:
            with Image.open(sample.path) as image:
                width, height = image.size
        except OSError:
            continue  # the file checks of training say why, with the file's name
        if width != height:
            return None
        sides.add(width)
    return sides.pop() if len(sides) == 1 else None


def dataset_scale(
    root: Path,
    layout: str,
    samples: list[Sample],
    *,
    microns_per_pixel: float | None = None,
    patch_px: int | None = None,
) -> Scale:
    """The scale of the dataset in `root`: the setting when given (it overrides what the
    layout says), else what the layout or `SYNTHETIC.json` says, else unknown (None, with the
    reason as the source). The patch side likewise: setting, layout, then the images' own.
    Refuses a setting for a BreakHis folder of several magnifications: one number cannot be
    the scale of them all."""
    declared = synthetic_scale(root) or LAYOUT_SCALES[layout]
    note = declared.note
    if layout == "breakhis" and declared is LAYOUT_SCALES["breakhis"]:
        magnifications = breakhis_magnifications(samples)
        if len(magnifications) > 1:
            found = ", ".join(f"{m}X" for m in magnifications)
            if microns_per_pixel is not None:
                raise DatasetError(
                    f"{root} holds BreakHis images at {found}: one data.microns_per_pixel "
                    "cannot be the scale of them all; train on one magnification's images"
                )
            note = f"the breakhis images mix magnifications ({found}): they have no one scale"
        elif magnifications:
            note = f"{note} (these are at {magnifications[0]}X)"
    side = patch_px or declared.patch_px or measured_patch_px(samples)
    if microns_per_pixel is not None:
        return Scale(microns_per_pixel, side, SETTING_SOURCE)
    if declared.microns_per_pixel is not None:
        return Scale(declared.microns_per_pixel, side, note)
    return Scale(None, side, f"unknown: {note}; set data.microns_per_pixel")
