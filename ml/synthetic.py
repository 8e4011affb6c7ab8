"""Histology-like synthetic images, so the whole system can be trained, tested and
demonstrated without downloading a dataset.

Each image is an H&E-like tissue patch: pink eosin stroma with fibrous texture, and purple
hematoxylin nuclei. The classes differ the way pathologists describe them, and overlap:
malignant patches have more, larger, darker and more irregular nuclei of more varied size
(pleomorphism); benign ones fewer, smaller, rounder, more uniform nuclei. Patients differ in
staining and in their nuclei's typical size, so a model must not lean on one patient's look.
Images are written in the Kaggle IDC layout, `<patient>/<0|1>/<patient>_<n>.png`, beside a
`SYNTHETIC.json` that says how they were made and at which scale (`microns_per_pixel`).

    python -m ml.synthetic --output var/datasets/synthetic --patients 40 --images 30
"""

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

EOSIN = np.array([0.93, 0.62, 0.76])  # stroma pink
HEMATOXYLIN = np.array([0.30, 0.16, 0.52])  # nuclei purple
BACKGROUND = np.array([0.97, 0.93, 0.96])  # unstained glass

# The scale the synthetic tissue is drawn at. Nuclei are drawn at a fraction of the image side
# (`ClassLook.radius`), so what is fixed is the field of view, not the pixel: a mean benign
# nucleus is 2 x 0.034 = 6.8 % of the side across, a malignant one 2 x 0.044 = 8.8 % (before
# elongation, up to 1.6x along one axis, and the patient's +-10 % `nucleus_scale`). Breast
# epithelial nuclei are about 6-10 um across, larger and more varied when malignant; a field of
# 100 um makes the mean benign nucleus 6.8 um and the mean malignant one 8.8 um, both in that
# range. So an image of `size` pixels is at 100 / size um per pixel: 0.78125 um at the demo
# model's 128 px (about a 10x-20x scan), 1.5625 um at the default 64 px.
FIELD_OF_VIEW_UM = 100.0


def microns_per_pixel(size: int) -> float:
    """The physical size of one pixel of a synthetic image `size` pixels across."""
    return FIELD_OF_VIEW_UM / size


SCALE_SOURCE = (
    f"ml.synthetic: a patch spans {FIELD_OF_VIEW_UM:g} um, so that its mean nuclei are "
    "6.8 um (benign) and 8.8 um (malignant) across, like breast epithelial nuclei (6-10 um)"
)


@dataclass(frozen=True)
class ClassLook:
    density: tuple[float, float]  # nuclei per 64x64 area (uniform range)
    radius: float  # mean radius, as a fraction of the image side
    pleomorphism: float  # relative spread of radii within one image
    irregularity: tuple[float, float]  # amplitude of the outline's wobble
    darkness: tuple[float, float]  # opacity of the nuclei stain


LOOKS = {
    0: ClassLook(
        density=(9, 26),
        radius=0.034,
        pleomorphism=0.15,
        irregularity=(0.0, 0.18),
        darkness=(0.50, 0.78),
    ),
    1: ClassLook(
        density=(18, 40),
        radius=0.044,
        pleomorphism=0.32,
        irregularity=(0.08, 0.35),
        darkness=(0.62, 0.90),
    ),
}


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: random values on a coarse grid, smoothly upsampled."""
    coarse = rng.random((scale, scale)).astype(np.float32)
    image = Image.fromarray((coarse * 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BICUBIC
    )
    return np.asarray(image, dtype=np.float32) / 255.0


def _stroma(rng: np.random.Generator, size: int, stain: np.ndarray) -> np.ndarray:
    texture = 0.6 * _smooth_noise(rng, size, 6) + 0.4 * _smooth_noise(rng, size, 18)
    # Fibres: stretched noise along a random direction.
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    along = np.cos(angle) * x + np.sin(angle) * y
    fibres = 0.5 + 0.5 * np.sin(2 * np.pi * (along * rng.uniform(6, 14)) + 4 * texture)
    density = np.clip(0.35 + 0.45 * texture + 0.2 * fibres, 0, 1)[..., None]
    # Gaps (lumen, fat) show the unstained glass.
    gaps = (_smooth_noise(rng, size, 4) > rng.uniform(0.72, 0.9))[..., None]
    tissue = BACKGROUND * (1 - density) + stain * density
    return np.where(gaps, BACKGROUND, tissue)


def _draw_nuclei(
    rng: np.random.Generator,
    image: np.ndarray,
    look: ClassLook,
    patient_scale: float,
    stain: np.ndarray,
) -> None:
    size = image.shape[0]
    count = rng.poisson(rng.uniform(*look.density) * (size / 64) ** 2)
    darkness = rng.uniform(*look.darkness)
    irregularity = rng.uniform(*look.irregularity)
    mean_radius = look.radius * size * patient_scale
    for _ in range(count):
        radius = max(1.2, rng.normal(mean_radius, look.pleomorphism * mean_radius))
        elongation = rng.uniform(1.0, 1.6)
        cy, cx = rng.uniform(0, size, 2)
        reach = int(np.ceil(radius * elongation * (1 + irregularity) + 2))
        y0, y1 = max(0, int(cy) - reach), min(size, int(cy) + reach + 1)
        x0, x1 = max(0, int(cx) - reach), min(size, int(cx) + reach + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = y - cy, x - cx
        rotation = rng.uniform(0, np.pi)
        u = dx * np.cos(rotation) + dy * np.sin(rotation)
        v = (-dx * np.sin(rotation) + dy * np.cos(rotation)) * elongation
        theta = np.arctan2(v, u)
        wobble = 1 + irregularity * (
            np.sin(3 * theta + rng.uniform(0, 6.3)) * rng.uniform(0.5, 1)
            + np.sin(5 * theta + rng.uniform(0, 6.3)) * rng.uniform(0, 0.6)
        )
        distance = np.sqrt(u**2 + v**2) / (radius * wobble)
        mask = np.clip((1.15 - distance) / 0.3, 0, 1)[..., None]  # soft edge
        # Chromatin: speckled stain inside the nucleus.
        speckle = 0.8 + 0.2 * rng.random(mask.shape).astype(np.float32)
        alpha = mask * darkness * speckle
        patch = image[y0:y1, x0:x1]
        image[y0:y1, x0:x1] = patch * (1 - alpha) + stain * alpha


@dataclass(frozen=True)
class Patient:
    id: str
    malignant_share: float  # of this patient's patches
    stain_eosin: np.ndarray
    stain_hematoxylin: np.ndarray
    nucleus_scale: float
    brightness: float


def make_patient(rng: np.random.Generator, index: int, malignant: bool) -> Patient:
    return Patient(
        id=f"P{index:04d}",
        malignant_share=rng.uniform(0.45, 0.8) if malignant else rng.uniform(0.0, 0.1),
        stain_eosin=np.clip(EOSIN + rng.normal(0, 0.05, 3), 0, 1),
        stain_hematoxylin=np.clip(HEMATOXYLIN + rng.normal(0, 0.06, 3), 0, 1),
        nucleus_scale=rng.normal(1.0, 0.1),
        brightness=rng.normal(1.0, 0.04),
    )


def render(rng: np.random.Generator, patient: Patient, label: int, size: int) -> np.ndarray:
    """One RGB uint8 patch of `patient` with class `label`."""
    image = _stroma(rng, size, patient.stain_eosin).astype(np.float32)
    _draw_nuclei(rng, image, LOOKS[label], patient.nucleus_scale, patient.stain_hematoxylin)
    image = image * patient.brightness + rng.normal(0, 0.025, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def generate(
    output: Path,
    patients: int = 40,
    images_per_patient: int = 30,
    size: int = 64,
    seed: int = 0,
) -> dict:
    """Write the dataset under `output` (IDC layout) and return a summary of it."""
    rng = np.random.default_rng(seed)
    counts = {"benign": 0, "malignant": 0}
    for index in range(patients):
        patient = make_patient(rng, index, malignant=index % 2 == 1)
        for number in range(images_per_patient):
            label = int(rng.random() < patient.malignant_share)
            folder = output / patient.id / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            pixels = render(rng, patient, label, size)
            Image.fromarray(pixels).save(
                folder / f"{patient.id}_{number:04d}.png", compress_level=1
            )
            counts["malignant" if label else "benign"] += 1
    summary = {
        "generator": "ml.synthetic",
        "seed": seed,
        "patients": patients,
        "images_per_patient": images_per_patient,
        "image_size": size,
        "microns_per_pixel": microns_per_pixel(size),
        "field_of_view_um": FIELD_OF_VIEW_UM,
        "classes": counts,
        "layout": "idc",
    }
    (output / "SYNTHETIC.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic histology dataset.")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--images", type=int, default=30, help="images per patient")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = generate(args.output, args.patients, args.images, args.size, args.seed)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
