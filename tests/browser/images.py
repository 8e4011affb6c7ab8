"""Images a clinician would upload: H&E-like tissue from the project's synthetic generator
(what the demonstration model can assess), and things that are not tissue at all."""

import io

import numpy as np
from PIL import Image

from tests.support.images import tissue_png

__all__ = ["blank_glass_png", "tissue_png"]


def blank_glass_png(size: int = 96) -> bytes:
    """An empty slide: one near-white colour, no tissue anywhere."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), (244, 242, 246), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()
