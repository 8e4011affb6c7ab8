"""Synthetic H&E tissue for the benchmarks (`ml.synthetic`), each image passing the quality
checks so that the model gives it a label as it would a real upload, and the CPU time of a
process."""

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ml.quality import QualityLimits, quality_checks
from ml.synthetic import make_patient, render

IMAGE_PX = 128
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def render_tissues(seed: int, count: int) -> list[np.ndarray]:
    """`count` renderings of synthetic H&E tissue that pass the quality checks."""
    rng = np.random.default_rng(seed)
    tissues: list[np.ndarray] = []
    index = 0
    while len(tissues) < count:
        malignant = bool(index % 2)
        pixels = render(rng, make_patient(rng, index, malignant), int(malignant), IMAGE_PX)
        if all(check.passed for check in quality_checks(pixels, QualityLimits())):
            tissues.append(pixels)
        index += 1
    return tissues


def variant_png(tissues: list[np.ndarray], number: int) -> bytes:
    """The `number`-th distinct PNG made from `tissues`: one of them with one pixel changed
    (rendering is slow, so each rendering is sent many times, never twice alike)."""
    pixels = tissues[number % len(tissues)].copy()
    changed = number // len(tissues)
    pixels[changed // IMAGE_PX % IMAGE_PX, changed % IMAGE_PX, 0] ^= 1
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def tissue_pngs(count: int, seed: int, bases: int = 16) -> list[bytes]:
    """`count` distinct PNGs of synthetic tissue made from `bases` renderings."""
    tissues = render_tissues(seed, bases)
    return [variant_png(tissues, number) for number in range(count)]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process (all its threads), 0 once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime, stime
