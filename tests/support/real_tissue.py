"""Real H&E tissue for the tests: tiles of the Aperio slide region in tests/data (see its
README), read with OpenSlide."""

from pathlib import Path

import numpy as np
from PIL import Image

SLIDE = Path(__file__).resolve().parents[1] / "data" / "cmu_small_region.svs"
# A tile counts as tissue when at most this share of it is near-white glass.
MAX_GLASS_FRACTION = 0.3
GLASS_BRIGHTNESS = 220


def tissue_tiles(side: int = 256) -> list[Image.Image]:
    """The slide's non-overlapping `side` x `side` tiles at full resolution that are mostly
    tissue, in reading order."""
    import openslide

    with openslide.OpenSlide(str(SLIDE)) as slide:
        width, height = slide.dimensions
        tiles = []
        for y in range(0, height - side + 1, side):
            for x in range(0, width - side + 1, side):
                tile = slide.read_region((x, y), 0, (side, side)).convert("RGB")
                grey = np.asarray(tile.convert("L"))
                if np.mean(grey >= GLASS_BRIGHTNESS) <= MAX_GLASS_FRACTION:
                    tiles.append(tile)
    return tiles
