"""What is in a dataset before training on it: class balance, image sizes, colour statistics
per channel, images per patient, and a grid of samples per class; PNG plots and a Markdown
report.

    python -m ml.explore_data --data PATH [--output var/reports/exploration]
"""

import argparse
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ml.contract import ImageError, decode_image
from ml.datasets import CLASSES, DatasetError, Sample, read_dataset
from ml.preprocessing import write_json

GRID_PER_CLASS = 8
THUMBNAIL = 96


def explore(samples: list[Sample], max_images: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Statistics of `samples`; colours and sizes from a random subset of `max_images`."""
    subset = random.Random(seed).sample(samples, min(max_images, len(samples)))
    sizes: Counter[str] = Counter()
    pixel_sum = np.zeros(3)
    pixel_square_sum = np.zeros(3)
    pixels = 0
    unreadable = 0
    per_class_mean: dict[int, list[np.ndarray]] = {0: [], 1: []}
    for sample in subset:
        try:
            image = decode_image(sample.path)
        except (ImageError, OSError):
            unreadable += 1
            continue
        sizes[f"{image.size[0]}x{image.size[1]}"] += 1
        array = np.asarray(image, dtype=np.float64) / 255.0
        flat = array.reshape(-1, 3)
        pixel_sum += flat.sum(axis=0)
        pixel_square_sum += (flat**2).sum(axis=0)
        pixels += flat.shape[0]
        per_class_mean[sample.label].append(flat.mean(axis=0))
    mean = pixel_sum / max(pixels, 1)
    std = np.sqrt(np.maximum(pixel_square_sum / max(pixels, 1) - mean**2, 0))
    per_patient = Counter(sample.group for sample in samples)
    counts = Counter(sample.label for sample in samples)
    images_per_patient = sorted(per_patient.values())
    return {
        "images": len(samples),
        "patients": len(per_patient),
        "classes": {name: counts.get(label, 0) for label, name in enumerate(CLASSES)},
        "malignant_share": round(counts.get(1, 0) / max(len(samples), 1), 4),
        "sampled_for_pixels": len(subset),
        "unreadable_in_sample": unreadable,
        "image_sizes": dict(sizes.most_common(20)),
        "channels": {
            "names": ["red", "green", "blue"],
            "mean": [round(float(v), 4) for v in mean],
            "std": [round(float(v), 4) for v in std],
            "mean_by_class": {
                CLASSES[label]: [round(float(v), 4) for v in np.mean(means, axis=0)]
                for label, means in per_class_mean.items()
                if means
            },
        },
        "images_per_patient": {
            "min": images_per_patient[0],
            "median": images_per_patient[len(images_per_patient) // 2],
            "max": images_per_patient[-1],
            # How many patients have each number of images: the shape, not only the range.
            "patients_by_count": {
                str(n): patients for n, patients in sorted(Counter(images_per_patient).items())
            },
        },
        "_per_patient": dict(per_patient),
    }


def write_report(samples: list[Sample], stats: dict[str, Any], folder: Path, seed: int = 0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    per_patient = stats.pop("_per_patient")

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].bar(list(stats["classes"]), list(stats["classes"].values()), color=["#6a9", "#c55"])
    axes[0].set_title("Images per class")
    axes[1].hist(list(per_patient.values()), bins=min(30, max(5, len(per_patient))))
    axes[1].set_title("Images per patient")
    sizes = stats["image_sizes"]
    axes[2].barh(list(sizes)[:10], list(sizes.values())[:10])
    axes[2].set_title("Most common image sizes")
    figure.tight_layout()
    figure.savefig(folder / "overview.png", dpi=90)
    plt.close(figure)

    rng = random.Random(seed)
    grid = Image.new("RGB", (GRID_PER_CLASS * THUMBNAIL, 2 * THUMBNAIL), "white")
    for row, label in enumerate((0, 1)):
        of_class = [s for s in samples if s.label == label]
        for column, sample in enumerate(rng.sample(of_class, min(GRID_PER_CLASS, len(of_class)))):
            try:
                thumb = decode_image(sample.path).resize((THUMBNAIL, THUMBNAIL))
            except (ImageError, OSError):
                continue
            grid.paste(thumb, (column * THUMBNAIL, row * THUMBNAIL))
    grid.save(folder / "samples.png")

    write_json(folder / "exploration.json", stats)
    channels = stats["channels"]
    lines = [
        "# Dataset exploration",
        "",
        f"- images: {stats['images']}, patients: {stats['patients']}",
        f"- classes: {stats['classes']} (malignant share {stats['malignant_share']:.1%})",
        f"- images per patient: {stats['images_per_patient']}",
        f"- most common sizes: {dict(list(stats['image_sizes'].items())[:5])}",
        f"- channel mean (RGB): {channels['mean']}, std: {channels['std']}",
        f"- channel mean by class: {channels['mean_by_class']}",
        "",
        "![overview](overview.png)",
        "",
        "Top row benign, bottom row malignant:",
        "",
        "![samples](samples.png)",
        "",
    ]
    (folder / "report.md").write_text("\n".join(lines))
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Explore a histopathology dataset.")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--layout", default="auto")
    parser.add_argument("--output", type=Path, default=Path("var/reports/exploration"))
    parser.add_argument("--max-images", type=int, default=2000)
    args = parser.parse_args(argv)
    try:
        samples, layout = read_dataset(args.data, args.layout)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stats = write_report(samples, explore(samples, args.max_images), args.output)
    print(
        f"{layout} dataset: {stats['images']} images of {stats['patients']} patients; "
        f"report in {args.output / 'report.md'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
