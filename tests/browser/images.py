"""Images a clinician would upload: H&E-like tissue from the project's synthetic generator
(what the demonstration model can assess), and things that are not tissue at all."""

import io

import numpy as np
from PIL import Image

from ml.synthetic import make_patient, render


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def tissue_png(seed: int, size: int = 96) -> bytes:
    """A synthetic H&E patch of a benign patient, different for each seed."""
    rng = np.random.default_rng(seed)
    return png(render(rng, make_patient(rng, seed, malignant=False), 0, size))


def blank_glass_png(size: int = 96) -> bytes:
    """An empty slide: one near-white colour, no tissue anywhere."""
    return png(np.full((size, size, 3), (244, 242, 246), dtype=np.uint8))
