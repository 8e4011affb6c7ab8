"""Where a slide's tiles are: the model's scale turned into a tile side at level 0, the grid
of tiles over the slide, which of them lie over tissue, and reading them as the model's input.

A tile is the model's field of view: `patch_px` pixels of `model_mpp` µm each, so
`patch_px * model_mpp / slide_mpp` level-0 pixels of the slide (per axis). It is read from the
pyramid level just finer than that (as OpenSlide's `get_best_level_for_downsample` picks it)
and resampled to the model's input side, the same pixels a patch of the training set showed.
"""

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import openslide
from numpy.typing import NDArray
from PIL import Image

from common.errors import ServiceError
from ml.quality import QualityLimits, tissue_mask

# The mask is made at most this many pixels in all (about 2,000 x 2,000): a 50,000 px slide's
# mask then costs what a small one's does, and each tile still covers many mask pixels.
MASK_MAX_PIXELS = 4_000_000
# Mask pixels per tile side at least this, so a tile's tissue share is a share, not a coin toss.
MASK_PIXELS_PER_TILE = 8
# Rows of the mask's level read at once: memory stays bounded whatever the level's size.
MASK_STRIP_ROWS = 512
# A tile is over tissue when at least this share of its area is.
MIN_TILE_TISSUE = 0.25


@dataclass(frozen=True)
class Scale:
    model_mpp: float  # µm per pixel of the model's patches
    patch_px: int  # their side, in pixels
    input_side: int  # what the model takes, after resizing
    slide_mpp_x: float
    slide_mpp_y: float

    @property
    def tile_width(self) -> float:
        """A tile's width in level-0 pixels."""
        return self.patch_px * self.model_mpp / self.slide_mpp_x

    @property
    def tile_height(self) -> float:
        return self.patch_px * self.model_mpp / self.slide_mpp_y

    def as_record(self) -> dict[str, float | int]:
        return {
            "model_microns_per_pixel": self.model_mpp,
            "patch_px": self.patch_px,
            "input_side": self.input_side,
            "slide_microns_per_pixel_x": self.slide_mpp_x,
            "slide_microns_per_pixel_y": self.slide_mpp_y,
            "tile_width_level0": self.tile_width,
            "tile_height_level0": self.tile_height,
        }

    @classmethod
    def from_record(cls, record: dict[str, float | int]) -> "Scale":
        return cls(
            model_mpp=float(record["model_microns_per_pixel"]),
            patch_px=int(record["patch_px"]),
            input_side=int(record["input_side"]),
            slide_mpp_x=float(record["slide_microns_per_pixel_x"]),
            slide_mpp_y=float(record["slide_microns_per_pixel_y"]),
        )


@dataclass(frozen=True)
class Grid:
    """Tiles of `tile_width` x `tile_height` level-0 pixels from the top-left corner; the last
    column and row may reach past the slide's edge (read as background)."""

    cols: int
    rows: int
    tile_width: float
    tile_height: float

    @classmethod
    def over(cls, width: int, height: int, scale: Scale) -> "Grid":
        return cls(
            cols=max(1, math.ceil(width / scale.tile_width)),
            rows=max(1, math.ceil(height / scale.tile_height)),
            tile_width=scale.tile_width,
            tile_height=scale.tile_height,
        )

    def origin(self, index: int) -> tuple[int, int]:
        """The level-0 top-left corner of tile `index` (row-major)."""
        row, col = divmod(index, self.cols)
        return round(col * self.tile_width), round(row * self.tile_height)

    def size(self) -> tuple[int, int]:
        return max(1, round(self.tile_width)), max(1, round(self.tile_height))


@dataclass(frozen=True)
class TissueMask:
    mask: NDArray[np.bool_]  # True over tissue
    downsample_x: float  # level-0 pixels per mask pixel
    downsample_y: float

    def png(self) -> bytes:
        """The mask as a PNG: tissue opaque green, the rest transparent (an overlay)."""
        import io

        rgba = np.zeros((*self.mask.shape, 4), dtype=np.uint8)
        rgba[self.mask] = (0, 170, 90, 255)
        buffer = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buffer, "PNG", optimize=False, compress_level=6)
        return buffer.getvalue()


def background_rgb(slide: openslide.AbstractSlide) -> tuple[int, int, int]:
    hex_colour = slide.properties.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR, "ffffff")
    try:
        return tuple(int(hex_colour[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    except ValueError:
        return (255, 255, 255)


def _flatten(region: Image.Image, background: tuple[int, int, int]) -> NDArray[np.uint8]:
    """RGBA from OpenSlide (transparent outside the scanned area) over the slide's background."""
    rgba = np.asarray(region, dtype=np.uint8)
    alpha = rgba[..., 3:4].astype(np.uint16)
    rgb = (rgba[..., :3] * alpha + np.array(background, np.uint16) * (255 - alpha)) // 255
    return rgb.astype(np.uint8)


def mask_downsample(width: int, height: int, tile_width: float) -> float:
    """Level-0 pixels per mask pixel: as coarse as MASK_PIXELS_PER_TILE per tile allows, and
    coarse enough for MASK_MAX_PIXELS in all."""
    by_tile = tile_width / MASK_PIXELS_PER_TILE
    by_budget = math.sqrt(width * height / MASK_MAX_PIXELS)
    return max(1.0, by_tile, by_budget)


def read_tissue_mask(
    slide: openslide.AbstractSlide, tile_width: float, limits: QualityLimits | None = None
) -> TissueMask:
    """The tissue mask, made with `ml.quality.tissue_mask` (the assessability checks' own
    optical-density threshold) from a low-resolution level read in strips."""
    limits = limits or QualityLimits()
    width, height = slide.dimensions
    wanted = mask_downsample(width, height, tile_width)
    level = slide.get_best_level_for_downsample(wanted)
    level_ds = slide.level_downsamples[level]
    level_w, level_h = slide.level_dimensions[level]
    factor = max(1, round(wanted / level_ds))
    background = background_rgb(slide)
    strips = []
    rows = max(factor, (MASK_STRIP_ROWS // factor) * factor)
    for top in range(0, level_h, rows):
        strip_h = min(rows, level_h - top)
        region = slide.read_region((0, round(top * level_ds)), level, (level_w, strip_h))
        rgb = _flatten(region, background)
        if factor > 1:
            rgb = np.asarray(Image.fromarray(rgb).reduce(factor))
        strips.append(rgb)
    rgb = np.concatenate(strips, axis=0)
    mask = tissue_mask(rgb, limits.tissue_od_floor, limits.tissue_od_ceiling)
    return TissueMask(mask, width / mask.shape[1], height / mask.shape[0])


def tissue_tiles(mask: TissueMask, grid: Grid, min_share: float = MIN_TILE_TISSUE) -> NDArray:
    """Indices (row-major, ascending) of the grid's tiles with at least `min_share` of their
    area over tissue. Each tile's share comes from a summed-area table of the mask, so the
    cost is that of the mask, not of the number of tiles."""
    table = np.zeros((mask.mask.shape[0] + 1, mask.mask.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = mask.mask.cumsum(0).cumsum(1)
    xs = np.clip(
        np.round(np.arange(grid.cols + 1) * grid.tile_width / mask.downsample_x).astype(int),
        0,
        mask.mask.shape[1],
    )
    ys = np.clip(
        np.round(np.arange(grid.rows + 1) * grid.tile_height / mask.downsample_y).astype(int),
        0,
        mask.mask.shape[0],
    )
    x0, x1 = xs[:-1][None, :], xs[1:][None, :]
    y0, y1 = ys[:-1][:, None], ys[1:][:, None]
    tissue = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    # The tile's full area in mask pixels (past the slide's edge counts as no tissue).
    area = (grid.tile_width / mask.downsample_x) * (grid.tile_height / mask.downsample_y)
    share = tissue / max(area, 1e-9)
    return np.flatnonzero(share.ravel() >= min_share).astype(np.uint32)


class TileReader:
    """Reads tiles of one slide as the model's input, several at once in a small thread pool
    (OpenSlide releases the GIL while it decodes)."""

    def __init__(self, slide: openslide.AbstractSlide, grid: Grid, input_side: int, threads: int):
        self.slide = slide
        self.grid = grid
        self.input_side = input_side
        self.background = background_rgb(slide)
        wanted = grid.tile_width / input_side
        self.level = slide.get_best_level_for_downsample(max(wanted, 1.0))
        self.level_ds = slide.level_downsamples[self.level]
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="tile-read")

    def read(self, index: int) -> NDArray[np.uint8]:
        x, y = self.grid.origin(int(index))
        width, height = self.grid.size()
        size = (max(1, round(width / self.level_ds)), max(1, round(height / self.level_ds)))
        region = self.slide.read_region((x, y), self.level, size)
        rgb = _flatten(region, self.background)
        side = self.input_side
        if rgb.shape[:2] != (side, side):
            rgb = np.asarray(
                Image.fromarray(rgb).resize(
                    (side, side), Image.Resampling.BILINEAR, reducing_gap=2.0
                )
            )
        return rgb

    def read_many(self, indices: NDArray) -> NDArray[np.uint8]:
        """The tiles as one (n, side, side, 3) uint8 array, in the order given."""
        batch = np.empty((len(indices), self.input_side, self.input_side, 3), dtype=np.uint8)
        for position, tile in enumerate(self._pool.map(self.read, indices)):
            batch[position] = tile
        return batch

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def unknown_resolution() -> ServiceError:
    return ServiceError(
        422,
        "The slide's resolution (microns per pixel) is unknown, so tiles cannot be cut at the "
        "model's scale. Upload it again with its resolution (the microns_per_pixel field).",
        code="slide_resolution_unknown",
    )
