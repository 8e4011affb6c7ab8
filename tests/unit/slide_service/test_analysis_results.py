"""What an analysis makes of its tiles' probabilities: regions (8-connected, NaN never part of
one, areas in mm², capped), their GeoJSON checked by independent validators, the smooth
heatmap, its Deep Zoom tiles, the Grad-CAM overlay, and the SQL that removes the queue."""

import io
import json
import re
import xml.etree.ElementTree as ET

import geojson
import numpy as np
import pytest
import shapely
from geojson_pydantic import FeatureCollection
from PIL import Image
from procrastinate.schema import SchemaManager

from slide_service.analyses import results
from slide_service.analyses.grid import Grid
from slide_service.analyses.queue_schema import drop_queue_schema_sql
from slide_service.analyses.results import (
    DeepZoomImage,
    find_regions,
    geometry_of,
    gradcam_overlay_png,
    heatmap_image,
    regions_feature_collection,
)

GRID = Grid(cols=6, rows=5, tile_width=100.0, tile_height=100.0)
SLIDE = (600, 500)
MPP = (0.5, 0.5)


def probabilities(shape=(5, 6), fill=0.0):
    return np.full(shape, fill, dtype=np.float32)


def test_two_separate_blobs_are_two_regions_sorted_by_peak():
    p = probabilities()
    p[0, 0:2] = [0.6, 0.7]  # region A: peak 0.7, two tiles
    p[3:5, 3:5] = 0.95  # region B: peak 0.95, four tiles
    found, total = find_regions(p, 0.5, GRID, SLIDE, MPP)
    assert total == 2
    assert [r.rank for r in found] == [1, 2]
    first, second = found
    assert first.peak_probability == pytest.approx(0.95)
    assert first.tiles.tolist() == [3 * 6 + 3, 3 * 6 + 4, 4 * 6 + 3, 4 * 6 + 4]
    assert first.bounds == {"x": 300, "y": 300, "width": 200, "height": 200}
    # 4 tiles of 100 x 100 px at 0.5 µm = 4 * 2,500 µm² = 0.01 mm².
    assert first.area_mm2 == pytest.approx(0.01)
    assert second.peak_probability == pytest.approx(0.7)
    assert second.mean_probability == pytest.approx(0.65)
    assert second.tiles.tolist() == [1, 0]  # highest probability first


def test_tiles_touching_at_a_corner_are_one_region():
    p = probabilities()
    p[0, 0] = p[1, 1] = p[2, 2] = 0.9
    found, total = find_regions(p, 0.5, GRID, SLIDE, MPP)
    assert total == 1 and len(found[0].tiles) == 3
    assert found[0].polygon.geom_type == "MultiPolygon"  # corners touch, edges do not


def test_nan_tiles_are_never_a_region_and_the_threshold_is_inclusive():
    p = probabilities(fill=np.nan)
    p[2, 2] = 0.5
    found, total = find_regions(p, 0.5, GRID, SLIDE, MPP)
    assert total == 1 and found[0].tiles.tolist() == [2 * 6 + 2]
    assert find_regions(probabilities(fill=np.nan), 0.0, GRID, SLIDE, MPP) == ([], 0)
    assert find_regions(probabilities(fill=0.49), 0.5, GRID, SLIDE, MPP) == ([], 0)


def test_area_uses_the_slide_s_resolution_and_stops_at_its_edge():
    grid = Grid(cols=2, rows=1, tile_width=100.0, tile_height=100.0)
    p = np.array([[0.9, 0.9]], dtype=np.float32)
    # The slide is 150 px wide: the second tile is half past the edge.
    [region], _ = find_regions(p, 0.5, grid, (150, 100), (0.25, 1.0))
    assert region.area_mm2 == pytest.approx(150 * 100 * 0.25 * 1.0 / 1e6)
    assert region.bounds["width"] == 150


def test_regions_are_capped_but_all_counted(monkeypatch):
    monkeypatch.setattr(results, "MAX_REGIONS", 3)
    p = probabilities((9, 9))
    for i, (r, c) in enumerate([(r, c) for r in range(0, 9, 2) for c in range(0, 9, 2)]):
        p[r, c] = 0.5 + i / 100
    grid = Grid(cols=9, rows=9, tile_width=10.0, tile_height=10.0)
    found, total = find_regions(p, 0.5, grid, (90, 90), MPP)
    assert total == 25
    assert len(found) == 3
    assert [round(r.peak_probability, 2) for r in found] == [0.74, 0.73, 0.72]


def _no_collinear(ring):
    points = ring[:-1]
    for i in range(len(points)):
        (ax, ay), (bx, by), (cx, cy) = points[i - 1], points[i], points[(i + 1) % len(points)]
        assert (bx - ax) * (cy - by) - (by - ay) * (cx - bx) != 0, points[i - 1 : i + 2]


def test_geometry_has_whole_pixels_and_no_vertex_mid_edge():
    grid = Grid(cols=4, rows=3, tile_width=100 / 3, tile_height=100 / 3)
    p = np.zeros((3, 4), dtype=np.float32)
    p[0, :] = 0.9
    p[1, 0] = 0.9
    p[2, 2] = 0.9  # corner-touching: MultiPolygon
    p[1, 3] = 0.9
    [region], _ = find_regions(p, 0.5, grid, (133, 100), MPP)
    geometry = geometry_of(region.polygon)
    polygons = (
        [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    )
    for polygon in polygons:
        for ring in polygon:
            for x, y in ring:
                assert float(x).is_integer() and float(y).is_integer()
            _no_collinear(ring)
    assert shapely.geometry.shape(geometry).area == pytest.approx(region.polygon.area, rel=0.05)


def _regions_as_stored():
    p = probabilities()
    p[0, 0:3] = 0.8
    p[1, 0] = 0.6
    p[3:5, 4] = 0.99
    p[4, 5] = 0.7
    found, _ = find_regions(p, 0.5, GRID, SLIDE, MPP)
    return [
        {
            "id": f"00000000-0000-0000-0000-00000000000{r.rank}",
            "rank": r.rank,
            "geometry": geometry_of(r.polygon),
            "peak_probability": r.peak_probability,
            "mean_probability": r.mean_probability,
            "area_mm2": r.area_mm2,
            "tile_count": len(r.tiles),
        }
        for r in found
    ]


def test_the_feature_collection_is_valid_geojson_qupath_imports():
    text = regions_feature_collection(_regions_as_stored()).model_dump_json(exclude_none=True)
    parsed = geojson.loads(text)
    assert parsed.is_valid, parsed.errors()
    FeatureCollection.model_validate_json(text)
    data = json.loads(text)
    assert len(data["features"]) == 2
    first = data["features"][0]
    properties = first["properties"]
    assert properties["objectType"] == "annotation"
    assert properties["classification"] == {"name": "Tumor", "color": [200, 0, 0]}
    assert properties["name"] == "Region 1" and properties["rank"] == 1
    assert properties["measurements"]["peak_probability"] == pytest.approx(0.99)
    assert properties["measurements"]["tile_count"] == 3
    assert first["id"].endswith("1")
    assert regions_feature_collection([]).features == []


def test_a_hostile_geometry_is_refused():
    bad = _regions_as_stored()[0] | {"geometry": {"type": "Polygon", "coordinates": [[[0, 0]]]}}
    with pytest.raises(ValueError):
        regions_feature_collection([bad])


# --- Heatmap ---------------------------------------------------------------------------------


def test_the_heatmap_has_the_slide_s_aspect_and_is_transparent_where_nothing_was_analysed():
    grid = Grid(cols=4, rows=3, tile_width=100.0, tile_height=100.0)
    p = np.full((3, 4), np.nan, dtype=np.float32)
    p[1, 1] = p[1, 2] = 0.5
    image = heatmap_image(p, grid, (350, 260))  # last column/row reach past the slide
    assert image.mode == "RGBA"
    assert image.size[0] / image.size[1] == pytest.approx(350 / 260, rel=0.02)
    alpha = np.asarray(image)[..., 3]
    per_tile = image.size[0] / 3.5
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0
    assert alpha[int(1.5 * per_tile), int(1.5 * per_tile)] > 0


def test_the_heatmap_ramps_smoothly_between_tiles():
    grid = Grid(cols=2, rows=1, tile_width=100.0, tile_height=100.0)
    p = np.array([[0.1, 0.9]], dtype=np.float32)
    image = heatmap_image(p, grid, (200, 100))
    row = np.asarray(image, dtype=np.float32)[image.size[1] // 2, :, :3]
    distinct = {tuple(px) for px in row.round().astype(int).tolist()}
    assert len(distinct) > 4, "blocky: only the two tiles' colours"
    steps = np.abs(np.diff(row, axis=0)).max()
    assert steps < np.abs(row[0] - row[-1]).max() / 2
    low, high = results.colour_ramp(np.array([0.1, 0.9], dtype=np.float32))[0]
    middle = row[len(row) // 2]
    assert not np.allclose(middle, low, atol=3) and not np.allclose(middle, high, atol=3)


# --- Deep Zoom -------------------------------------------------------------------------------


def test_deep_zoom_levels_tiles_and_overlap():
    image = Image.new("RGBA", (600, 300), (10, 20, 30, 255))
    dz = DeepZoomImage(image, tile_size=254, overlap=1)
    assert dz.level_count == 11  # ceil(log2(600)) + 1
    assert dz.level_size(10) == (600, 300)
    assert dz.level_size(9) == (300, 150)
    assert dz.level_size(0) == (1, 1)
    assert dz.level_tiles(10) == (3, 2)
    tile = Image.open(io.BytesIO(dz.tile(10, 0, 0)))
    assert tile.size == (255, 255) and tile.mode == "RGBA"  # right and bottom overlap only
    assert Image.open(io.BytesIO(dz.tile(10, 1, 1))).size == (256, 300 - 253)
    assert Image.open(io.BytesIO(dz.tile(10, 2, 0))).size == (600 - 507, 255)
    for level, col, row in ((11, 0, 0), (-1, 0, 0), (10, 3, 0), (10, 0, 2), (10, -1, 0)):
        assert dz.tile(level, col, row) is None
    root = ET.fromstring(dz.dzi())
    ns = "{http://schemas.microsoft.com/deepzoom/2008}"
    assert root.tag == f"{ns}Image"
    assert root.attrib == {"Format": "png", "Overlap": "1", "TileSize": "254"}
    assert root.find(f"{ns}Size").attrib == {"Width": "600", "Height": "300"}
    assert DeepZoomImage(Image.new("RGBA", (1, 1))).level_count == 1


def test_the_gradcam_overlay_is_a_png_of_the_tile_tinted_where_the_map_is_strong():
    tile = np.full((64, 64, 3), 200, dtype=np.uint8)
    cam = np.zeros((8, 8), dtype=np.uint8)
    cam[:, 4:] = 255
    overlay = np.asarray(Image.open(io.BytesIO(gradcam_overlay_png(tile, cam))))
    assert overlay.shape == (64, 64, 3)
    assert np.abs(overlay[:, :16].astype(int) - 200).max() <= 1
    assert np.abs(overlay[:, -8:].astype(int) - 200).max() > 40


# --- The queue's DROP statements ------------------------------------------------------------


def test_drop_sql_names_every_function_of_procrastinate_s_schema_with_its_argument_types():
    schema = SchemaManager.get_schema()
    created = {}
    for match in re.finditer(r"CREATE (?:OR REPLACE )?FUNCTION\s+(\w+)\s*\(", schema):
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(schema[end], 0)
            end += 1
        arguments = [a.strip() for a in schema[match.end() : end - 1].split(",") if a.strip()]
        created[match.group(1)] = [" ".join(a.split()[1:]) for a in arguments]
    dropped = {
        m.group(1): [a.strip() for a in m.group(2).split(",") if a.strip()]
        for m in re.finditer(r"DROP FUNCTION IF EXISTS (\w+)\(([^)]*)\)", drop_queue_schema_sql())
    }
    assert created and dropped == created
    for types in dropped.values():
        for type_ in types:
            assert "default" not in type_.lower() and "=" not in type_
    for table in ("procrastinate_jobs", "procrastinate_workers", "procrastinate_events"):
        assert f"DROP TABLE IF EXISTS {table} CASCADE" in drop_queue_schema_sql()
    for type_ in re.findall(r"CREATE TYPE (\w+)", schema):
        assert f"DROP TYPE IF EXISTS {type_} CASCADE" in drop_queue_schema_sql()
