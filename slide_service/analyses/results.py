"""What an analysis makes of its tiles' probabilities: suspicious regions (connected tiles at
or above the threshold, as polygons with their area, peak and mean), the smooth heatmap over
the slide, the Grad-CAM overlay of a tile, and the regions as GeoJSON that QuPath imports.

`scipy.ndimage.label` finds the connected tiles and `shapely` turns each group of tile
squares into one polygon (its area and bounds come from it); `geojson-pydantic` types the
FeatureCollection, so the export is GeoJSON by construction rather than a hand-built dict."""

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from geojson_pydantic import Feature, FeatureCollection, MultiPolygon, Polygon
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

from slide_service.analyses.grid import Grid

# Regions kept with the analysis, by peak; the summary still counts every one.
MAX_REGIONS = 50
# Tiles of each region shown with their Grad-CAM.
TOP_TILES_PER_REGION = 3
# Heatmap pixels per tile side: enough for a smooth ramp between tile centres.
HEATMAP_PX_PER_TILE = 8
HEATMAP_MAX_SIDE = 8192
# Colour ramp of P(malignant), from low to high (RGB), and its opacity at each stop: low
# probabilities stay faint, so the tissue under them shows through.
_RAMP = np.array(
    [(49, 54, 149), (69, 117, 180), (254, 224, 144), (244, 109, 67), (215, 48, 39)], np.float32
)
_RAMP_ALPHA = np.array([70, 90, 150, 200, 225], np.float32)
QUPATH_CLASS = {"name": "Tumor", "color": [200, 0, 0]}


@dataclass
class RegionFound:
    rank: int
    polygon: shapely.Polygon | shapely.MultiPolygon
    area_mm2: float
    peak_probability: float
    mean_probability: float
    tiles: NDArray  # grid indices, highest probability first
    bounds: dict[str, int] = field(default_factory=dict)


def find_regions(
    probabilities: NDArray[np.float32],
    threshold: float,
    grid: Grid,
    slide_size: tuple[int, int],
    mpp: tuple[float, float],
) -> tuple[list[RegionFound], int]:
    """Regions sorted by peak probability (then area), at most MAX_REGIONS, and how many there
    were in all. Tiles touching at a corner belong to one region (8-connectivity)."""
    above = np.nan_to_num(probabilities, nan=-1.0) >= threshold
    labels, count = ndimage.label(above, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return [], 0
    width, height = slide_size
    mm2_per_px = mpp[0] * mpp[1] / 1e6
    found = []
    for label, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        rows, cols = np.nonzero(labels[where] == label)
        rows, cols = rows + where[0].start, cols + where[1].start
        values = probabilities[rows, cols].astype(np.float64)
        boxes = [
            shapely.box(
                round(c * grid.tile_width),
                round(r * grid.tile_height),
                min(round((c + 1) * grid.tile_width), width),
                min(round((r + 1) * grid.tile_height), height),
            )
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
        ]
        polygon = shapely.union_all(boxes)
        order = np.argsort(-values, kind="stable")
        x0, y0, x1, y1 = polygon.bounds
        found.append(
            RegionFound(
                rank=0,
                polygon=polygon,
                area_mm2=float(polygon.area * mm2_per_px),
                peak_probability=float(values.max()),
                mean_probability=float(values.mean()),
                tiles=(rows * grid.cols + cols)[order],
                bounds={"x": int(x0), "y": int(y0), "width": int(x1 - x0), "height": int(y1 - y0)},
            )
        )
    found.sort(key=lambda region: (-region.peak_probability, -region.area_mm2))
    for rank, region in enumerate(found, start=1):
        region.rank = rank
    return found[:MAX_REGIONS], count


def geometry_of(polygon: shapely.Polygon | shapely.MultiPolygon) -> dict[str, Any]:
    # Whole pixels, and no vertex in the middle of a straight edge (the union of squares
    # leaves one at every tile corner).
    return shapely.geometry.mapping(shapely.simplify(shapely.set_precision(polygon, 1.0), 0.0))


def regions_feature_collection(regions: list[dict[str, Any]]) -> FeatureCollection:
    """Regions as QuPath annotations: level-0 pixel coordinates, class `Tumor`, and the
    measures under `measurements` (QuPath shows them in its measurement table)."""
    features = []
    for region in regions:
        geometry = region["geometry"]
        shape = Polygon if geometry["type"] == "Polygon" else MultiPolygon
        features.append(
            Feature(
                type="Feature",
                id=str(region["id"]),
                geometry=shape.model_validate(geometry),
                properties={
                    "objectType": "annotation",
                    "name": f"Region {region['rank']}",
                    "classification": QUPATH_CLASS,
                    "isLocked": False,
                    "measurements": {
                        "peak_probability": round(region["peak_probability"], 4),
                        "mean_probability": round(region["mean_probability"], 4),
                        "area_mm2": round(region["area_mm2"], 6),
                        "tile_count": region["tile_count"],
                    },
                    "rank": region["rank"],
                },
            )
        )
    return FeatureCollection(type="FeatureCollection", features=features)


def colour_ramp(values: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """RGB and alpha (0-255) of probabilities in [0, 1] along the ramp."""
    position = np.clip(values, 0.0, 1.0) * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    part = (position - low)[..., None]
    rgb = _RAMP[low] * (1 - part) + _RAMP[low + 1] * part
    alpha = _RAMP_ALPHA[low] * (1 - part[..., 0]) + _RAMP_ALPHA[low + 1] * part[..., 0]
    return rgb, alpha


def heatmap_image(
    probabilities: NDArray[np.float32], grid: Grid, slide_size: tuple[int, int]
) -> Image.Image:
    """The heatmap over the whole slide, as RGBA with the slide's aspect: probabilities
    interpolated bilinearly between tile centres (normalised by where tiles were analysed,
    so the edge of the tissue does not fade toward zero), transparent off the tissue."""
    rows, cols = probabilities.shape
    per_tile = max(1, min(HEATMAP_PX_PER_TILE, HEATMAP_MAX_SIDE // max(rows, cols)))
    size = (cols * per_tile, rows * per_tile)
    analysed = np.isfinite(probabilities)
    weight = Image.fromarray(analysed.astype(np.float32), "F").resize(
        size, Image.Resampling.BILINEAR
    )
    weighted = Image.fromarray(np.where(analysed, probabilities, 0).astype(np.float32), "F").resize(
        size, Image.Resampling.BILINEAR
    )
    weight_px = np.asarray(weight)
    smooth = np.asarray(weighted) / np.maximum(weight_px, 1e-6)
    rgb, alpha = colour_ramp(smooth)
    # Fade out at the tissue's edge over half a tile, rather than a hard step.
    alpha = alpha * np.clip((weight_px - 0.25) * 2.0, 0.0, 1.0)
    rgba = np.dstack([rgb, alpha]).round().clip(0, 255).astype(np.uint8)
    image = Image.fromarray(rgba, "RGBA")
    # Cut to the slide's extent: the grid's last column and row may reach past it.
    width, height = slide_size
    crop = (
        max(1, round(width / grid.tile_width * per_tile)),
        max(1, round(height / grid.tile_height * per_tile)),
    )
    return image.crop((0, 0, min(crop[0], size[0]), min(crop[1], size[1])))


def gradcam_overlay_png(tile: NDArray[np.uint8], gradcam: NDArray[np.uint8]) -> bytes:
    """A tile with its Grad-CAM map stretched over it, blended where the map is strong."""
    side = tile.shape[0]
    stretched = (
        np.asarray(
            Image.fromarray(gradcam).resize((tile.shape[1], side), Image.Resampling.BILINEAR),
            dtype=np.float32,
        )
        / 255.0
    )
    rgb, _ = colour_ramp(stretched)
    weight = (0.6 * stretched)[..., None]
    blended = tile.astype(np.float32) * (1 - weight) + rgb * weight
    return png_bytes(Image.fromarray(blended.round().clip(0, 255).astype(np.uint8), "RGB"))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


class DeepZoomImage:
    """Deep Zoom levels and tiles of an in-memory RGBA image (the heatmap), PNG so that the
    transparency stays; the same level arithmetic as OpenSlide's generator (levels halve
    down to 1 px, tiles of `tile_size` with `overlap` on inner edges)."""

    def __init__(self, image: Image.Image, tile_size: int = 254, overlap: int = 1) -> None:
        self.image = image
        self.tile_size = tile_size
        self.overlap = overlap
        self.level_count = math.ceil(math.log2(max(image.size))) + 1 if max(image.size) > 1 else 1
        self._levels: dict[int, Image.Image] = {}

    def level_size(self, level: int) -> tuple[int, int]:
        scale = 2 ** (self.level_count - 1 - level)
        width, height = self.image.size
        return max(1, math.ceil(width / scale)), max(1, math.ceil(height / scale))

    def level_tiles(self, level: int) -> tuple[int, int]:
        width, height = self.level_size(level)
        return math.ceil(width / self.tile_size), math.ceil(height / self.tile_size)

    def dzi(self) -> str:
        width, height = self.image.size
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="png" '
            f'Overlap="{self.overlap}" TileSize="{self.tile_size}">'
            f'<Size Height="{height}" Width="{width}"/></Image>'
        )

    def _level(self, level: int) -> Image.Image:
        if level not in self._levels:
            size = self.level_size(level)
            self._levels[level] = (
                self.image
                if size == self.image.size
                else self.image.resize(size, Image.Resampling.BOX)
            )
        return self._levels[level]

    def tile(self, level: int, col: int, row: int) -> bytes | None:
        if not 0 <= level < self.level_count:
            return None
        cols, rows = self.level_tiles(level)
        if not (0 <= col < cols and 0 <= row < rows):
            return None
        width, height = self.level_size(level)
        x0 = col * self.tile_size - (self.overlap if col else 0)
        y0 = row * self.tile_size - (self.overlap if row else 0)
        x1 = min(width, (col + 1) * self.tile_size + self.overlap)
        y1 = min(height, (row + 1) * self.tile_size + self.overlap)
        return png_bytes(self._level(level).crop((x0, y0, x1, y1)))
