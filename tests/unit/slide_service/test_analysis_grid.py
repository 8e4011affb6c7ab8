"""Where a slide analysis's tiles are: the model's scale as a tile side at level 0 (per axis),
the grid over the slide, the tissue mask read from a real pyramidal TIFF in strips, which
tiles lie over tissue, reading tiles as the model's input, and the per-tile reason codes."""

import math

import numpy as np
import openslide
import pytest

from slide_service.analyses import grid as grid_module
from slide_service.analyses.grid import (
    MASK_MAX_PIXELS,
    MASK_PIXELS_PER_TILE,
    Grid,
    Scale,
    TileReader,
    TissueMask,
    mask_downsample,
    read_tissue_mask,
    tissue_tiles,
)
from slide_service.analyses.inference import BatchAnswer
from slide_service.analyses.runner import (
    ANALYSED,
    BACKGROUND,
    REASON_CODES,
    UNKNOWN_REASON,
    codes_of,
    skipped_counts,
)
from tests.support.slides import TILE, pyramidal_tiff

# The synthetic slide: 8,192 x 6,144 px at 0.25 µm/px, levels 1 and 4 (2,048 x 1,536), so the
# mask's level holds 8 x 6 tiles of the generator, each tissue or glass by its centre.
SLIDE_W, SLIDE_H = 8192, 6144
SLIDE_MPP = 0.25
MASK_LEVEL_DS = 4


def scale(model_mpp=1.0, patch_px=128, input_side=64, mpp_x=SLIDE_MPP, mpp_y=SLIDE_MPP):
    return Scale(model_mpp, patch_px, input_side, mpp_x, mpp_y)


# --- Scale and Grid -------------------------------------------------------------------------


def test_a_tile_is_the_model_s_field_of_view_in_level_0_pixels_per_axis():
    # 224 px of 0.5 µm = 112 µm: 448 px of a 0.25 µm/px axis, 224 px of a 0.5 µm/px one.
    anisotropic = scale(model_mpp=0.5, patch_px=224, mpp_x=0.25, mpp_y=0.5)
    assert anisotropic.tile_width == pytest.approx(448)
    assert anisotropic.tile_height == pytest.approx(224)
    # A coarser slide than the model: a tile is fewer level-0 pixels than the patch.
    coarse = scale(model_mpp=0.25, patch_px=96, mpp_x=1.0, mpp_y=1.0)
    assert coarse.tile_width == pytest.approx(24)


def test_the_scale_round_trips_through_its_stored_record():
    original = scale(model_mpp=0.4991, patch_px=50, input_side=96, mpp_x=0.2527, mpp_y=0.2611)
    record = original.as_record()
    assert record["tile_width_level0"] == pytest.approx(original.tile_width)
    assert record["tile_height_level0"] == pytest.approx(original.tile_height)
    assert Scale.from_record(record) == original
    # JSON may bring numbers back as strings or ints; the record is still read as numbers.
    loose = {key: str(value) for key, value in record.items()}
    loose["patch_px"] = "50"
    assert Scale.from_record(loose) == original
    with pytest.raises(KeyError):
        Scale.from_record({k: v for k, v in record.items() if k != "slide_microns_per_pixel_y"})


def test_the_grid_covers_the_slide_rounding_up_per_axis():
    anisotropic = scale(model_mpp=0.5, patch_px=224, mpp_x=0.25, mpp_y=0.5)  # 448 x 224
    grid = Grid.over(1000, 1000, anisotropic)
    assert (grid.cols, grid.rows) == (3, 5)  # ceil(1000 / 448), ceil(1000 / 224)
    assert grid.size() == (448, 224)
    # Exactly divisible: no extra column or row.
    exact = Grid.over(896, 448, anisotropic)
    assert (exact.cols, exact.rows) == (2, 2)
    # One pixel more: one more of each.
    assert (Grid.over(897, 449, anisotropic).cols, Grid.over(897, 449, anisotropic).rows) == (3, 3)
    # A slide smaller than one tile (or of no size at all) still has one tile.
    for width, height in ((10, 10), (0, 0), (1, 1)):
        tiny = Grid.over(width, height, anisotropic)
        assert (tiny.cols, tiny.rows) == (1, 1)


def test_tile_origins_are_rounded_per_tile_so_fractional_sides_do_not_drift():
    grid = Grid(cols=7, rows=4, tile_width=100 / 3, tile_height=12.5)
    # Row-major: index = row * cols + col.
    assert grid.origin(0) == (0, 0)
    assert grid.origin(1) == (33, 0)  # 33.33
    assert grid.origin(2) == (67, 0)  # 66.67: rounded, not truncated
    assert grid.origin(3) == (100, 0)  # exactly 100, however many tiles came before
    assert grid.origin(6) == (200, 0)
    assert grid.origin(7) == (0, 12)  # row 1: 12.5 rounds to even
    assert grid.origin(7 * 3 + 6) == (200, round(37.5))
    # Consecutive origins never leave a gap or overlap of more than the rounding.
    xs = [grid.origin(c)[0] for c in range(grid.cols)]
    steps = np.diff(xs)
    assert set(steps.tolist()) <= {33, 34}
    assert Grid(cols=1, rows=1, tile_width=0.3, tile_height=0.2).size() == (1, 1)


# --- Mask resolution ------------------------------------------------------------------------


def test_mask_downsample_is_never_finer_than_level_0():
    assert mask_downsample(100, 100, 2.0) == 1.0
    assert mask_downsample(1, 1, 0.5) == 1.0


def test_mask_downsample_gives_each_tile_its_pixels_on_a_small_slide():
    tile = 512.0
    assert mask_downsample(4000, 3000, tile) == pytest.approx(tile / MASK_PIXELS_PER_TILE)
    ds = mask_downsample(4000, 3000, tile)
    assert tile / ds >= MASK_PIXELS_PER_TILE - 1e-9


def test_mask_downsample_keeps_a_huge_slide_s_mask_within_the_budget():
    width, height = 150_000, 90_000
    ds = mask_downsample(width, height, 64.0)
    assert (width / ds) * (height / ds) <= MASK_MAX_PIXELS * (1 + 1e-9)
    # ... and no coarser than the budget needs.
    assert (width / ds) * (height / ds) == pytest.approx(MASK_MAX_PIXELS, rel=1e-6)


# --- Tissue tiles on a synthetic mask -------------------------------------------------------


def test_tissue_tiles_count_the_part_past_the_slide_s_edge_as_no_tissue():
    # A 10 x 10 slide, all tissue, tiles of 4: the last column and row reach 2 px past the
    # edge, so their shares are 8/16 = 0.5 and the corner's 4/16 = 0.25.
    mask = TissueMask(np.ones((10, 10), dtype=bool), 1.0, 1.0)
    grid = Grid(cols=3, rows=3, tile_width=4.0, tile_height=4.0)
    assert tissue_tiles(mask, grid, 0.25).tolist() == list(range(9))
    assert tissue_tiles(mask, grid, 0.26).tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert tissue_tiles(mask, grid, 0.5).tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert tissue_tiles(mask, grid, 0.51).tolist() == [0, 1, 3, 4]
    assert tissue_tiles(mask, grid, 1.0).tolist() == [0, 1, 3, 4]


def test_tissue_tiles_take_a_share_at_the_minimum_and_refuse_one_just_below():
    pixels = np.zeros((8, 12), dtype=bool)
    pixels[0:2, 0:2] = True  # tile 0: 4 of 16 = 0.25
    pixels[0:1, 4:7] = True  # tile 1: 3 of 16 = 0.1875
    pixels[4:8, 8:12] = True  # tile 5: all of it
    mask = TissueMask(pixels, 1.0, 1.0)
    grid = Grid(cols=3, rows=2, tile_width=4.0, tile_height=4.0)
    found = tissue_tiles(mask, grid, 0.25)
    assert found.tolist() == [0, 5]
    assert found.dtype == np.uint32
    assert tissue_tiles(mask, grid, 0.25 + 1e-9).tolist() == [5]
    assert tissue_tiles(mask, grid, 0.1875).tolist() == [0, 1, 5]
    assert tissue_tiles(mask, grid, 0.0).tolist() == list(range(6))


def test_tissue_tiles_scale_the_grid_to_a_coarser_mask():
    # A 40 x 40 slide seen by a 10 x 10 mask (4 level-0 px per mask px); tiles of 20 level-0
    # px are 5 x 5 mask px. Tissue in the bottom-right quarter only.
    pixels = np.zeros((10, 10), dtype=bool)
    pixels[5:, 5:] = True
    mask = TissueMask(pixels, 4.0, 4.0)
    grid = Grid(cols=2, rows=2, tile_width=20.0, tile_height=20.0)
    assert tissue_tiles(mask, grid).tolist() == [3]
    # Anisotropic: the mask's pixels are 4 wide and 2 tall; tissue in the bottom row of tiles.
    pixels = np.zeros((20, 10), dtype=bool)
    pixels[10:, :] = True
    mask = TissueMask(pixels, 4.0, 2.0)
    assert tissue_tiles(mask, grid).tolist() == [2, 3]


def test_tissue_tiles_of_an_empty_mask_and_of_one_without_tissue():
    grid = Grid(cols=4, rows=3, tile_width=5.0, tile_height=5.0)
    none = tissue_tiles(TissueMask(np.zeros((15, 20), dtype=bool), 1.0, 1.0), grid)
    assert none.tolist() == []
    assert none.dtype == np.uint32
    everything = tissue_tiles(TissueMask(np.ones((15, 20), dtype=bool), 1.0, 1.0), grid)
    assert everything.tolist() == list(range(12))


# --- The mask and tiles of a real pyramidal TIFF --------------------------------------------


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    return pyramidal_tiff(
        tmp_path_factory.mktemp("grid") / "ellipse.tiff",
        SLIDE_W,
        SLIDE_H,
        SLIDE_MPP,
        downsamples=(1, MASK_LEVEL_DS),
    )


@pytest.fixture
def slide(slide_path):
    with openslide.OpenSlide(slide_path) as opened:
        yield opened


def generator_tissue(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether level-0 points lie in a tissue tile of the mask's level, by the generator's
    own rule (a tile is tissue when its centre is inside the ellipse)."""
    side = TILE * MASK_LEVEL_DS
    cx = ((x // side) + 0.5) * side / SLIDE_W - 0.5
    cy = ((y // side) + 0.5) * side / SLIDE_H - 0.5
    return (cx / 0.42) ** 2 + (cy / 0.4) ** 2 < 1


def expected_mask(shape: tuple[int, int], ds_x: float, ds_y: float) -> np.ndarray:
    rows, cols = shape
    ys, xs = np.mgrid[0:rows, 0:cols]
    return generator_tissue((xs + 0.5) * ds_x, (ys + 0.5) * ds_y)


def test_the_mask_covers_the_ellipse_of_tissue_and_not_the_glass(slide):
    tile_width = scale().tile_width  # 512 level-0 px
    mask = read_tissue_mask(slide, tile_width)
    # Read from the 1/4 level and reduced to tile / 8 = 64 level-0 px per mask pixel.
    assert mask.mask.shape == (SLIDE_H // 64, SLIDE_W // 64)
    assert mask.downsample_x == pytest.approx(64)
    assert mask.downsample_y == pytest.approx(64)
    truth = expected_mask(mask.mask.shape, mask.downsample_x, mask.downsample_y)
    assert 0.2 < truth.mean() < 0.8  # the slide has both
    assert mask.mask[truth].mean() > 0.97, "tissue missing from the mask"
    assert mask.mask[~truth].mean() < 0.03, "glass in the mask"
    # The PNG overlay is the mask: opaque over tissue, transparent elsewhere, same size.
    from io import BytesIO

    from PIL import Image

    rgba = np.asarray(Image.open(BytesIO(mask.png())))
    assert rgba.shape == (*mask.mask.shape, 4)
    assert np.array_equal(rgba[..., 3] > 0, mask.mask)


def test_the_mask_read_in_many_strips_is_the_mask_read_in_one(slide, monkeypatch):
    tile_width = scale().tile_width
    monkeypatch.setattr(grid_module, "MASK_STRIP_ROWS", 10**6)
    whole = read_tissue_mask(slide, tile_width)
    reads = []
    original = slide.read_region

    def counting(location, level, size):
        reads.append((location, level, size))
        return original(location, level, size)

    monkeypatch.setattr(slide, "read_region", counting)
    # 16 level rows per mask row: strips of 16 rows of the level (one mask row each), plus
    # a strip size that is no multiple of it (rounded down to one).
    for strip_rows in (16, 40, 17, 1):
        monkeypatch.setattr(grid_module, "MASK_STRIP_ROWS", strip_rows)
        reads.clear()
        strips = read_tissue_mask(slide, tile_width)
        assert np.array_equal(strips.mask, whole.mask), strip_rows
        level_rows = SLIDE_H // MASK_LEVEL_DS
        assert len(reads) == math.ceil(level_rows / max(16, strip_rows // 16 * 16))
        # No read is taller than a strip, and together they cover the level once.
        heights = [size[1] for _, _, size in reads]
        assert sum(heights) == level_rows
        assert max(heights) <= max(16, strip_rows)
        tops = [location[1] for location, _, _ in reads]
        assert tops == sorted(tops) and tops[0] == 0


def test_a_mask_of_a_blank_slide_has_no_tissue(tmp_path):
    import tifffile

    path = tmp_path / "blank.tiff"
    glass = np.full((1024, 1024, 3), 242, dtype=np.uint8)
    tifffile.imwrite(
        path,
        glass,
        tile=(256, 256),
        photometric="rgb",
        resolution=(4e4, 4e4),
        resolutionunit="CENTIMETER",
    )
    with openslide.OpenSlide(path) as blank:
        mask = read_tissue_mask(blank, 128.0)
    assert not mask.mask.any()


def test_the_tile_reader_gives_model_inputs_from_the_right_place(slide):
    model = scale()  # tiles of 512 level-0 px, input 64 px
    grid = Grid.over(SLIDE_W, SLIDE_H, model)
    assert (grid.cols, grid.rows) == (16, 12)
    reader = TileReader(slide, grid, model.input_side, threads=2)
    try:
        # Read from the 1/4 level: 512 / 64 = 8 wanted, the finest level not finer than that.
        assert reader.level == 1
        centre = (grid.rows // 2) * grid.cols + grid.cols // 2
        corner = 0
        batch = reader.read_many(np.array([corner, centre, corner], dtype=np.uint32))
        assert batch.shape == (3, 64, 64, 3)
        assert batch.dtype == np.uint8
        glass, tissue = batch[0].astype(int), batch[1].astype(int)
        assert glass.min() > 225 and np.ptp(glass, axis=2).max() < 15  # bright, grey
        assert tissue.mean() < 215 and np.ptp(tissue, axis=2).mean() > 30  # stained
        assert np.array_equal(batch[0], batch[2])  # in the order asked, twice if asked twice
        assert generator_tissue(np.array([SLIDE_W / 2 + 1]), np.array([SLIDE_H / 2 + 1]))[0]
        assert np.array_equal(reader.read(centre), batch[1])
        assert reader.read_many(np.array([], dtype=np.uint32)).shape == (0, 64, 64, 3)
    finally:
        reader.close()


def test_a_tile_past_the_slide_s_edge_is_filled_with_the_background(slide_path):
    # A grid whose last column starts 256 px before the right edge: half of it is past it.
    with openslide.OpenSlide(slide_path) as opened:
        model = scale(model_mpp=1.0, patch_px=192)  # 768 level-0 px
        grid = Grid.over(SLIDE_W, SLIDE_H, model)
        last_x = grid.origin(grid.cols - 1)[0]
        assert last_x < SLIDE_W < last_x + grid.size()[0]
        reader = TileReader(opened, grid, 64, threads=1)
        try:
            tile = reader.read(grid.cols - 1)
        finally:
            reader.close()
    outside = tile[:, 64 * (SLIDE_W - last_x) // grid.size()[0] + 2 :]
    assert outside.size and (outside >= 250).all()  # white, not black or transparent


# --- Reason codes of a batch's answer -------------------------------------------------------


def answer(items):
    return BatchAnswer(model_version="v1", threshold=0.5, items=items)


def test_codes_of_a_batch_keep_probabilities_and_the_first_reason():
    probabilities, codes = codes_of(
        answer(
            [
                {"assessment": "assessed", "malignant_probability": 0.75},
                {"assessment": "not_assessable", "reasons": ["out_of_focus", "exposure"]},
                {"assessment": "assessed", "malignant_probability": 0.0},
                {"assessment": "not_assessable", "reasons": ["a_reason_from_the_future"]},
                {"assessment": "not_assessable", "reasons": []},
                {"assessment": "not_assessable"},
                {"assessment": "assessed", "malignant_probability": 1.0},
            ]
        )
    )
    assert probabilities.dtype == np.float32 and codes.dtype == np.uint8
    assert probabilities[[0, 2, 6]].tolist() == [0.75, 0.0, 1.0]
    assert np.isnan(probabilities[[1, 3, 4, 5]]).all()
    assert codes.tolist() == [
        ANALYSED,
        REASON_CODES["out_of_focus"],
        ANALYSED,
        UNKNOWN_REASON,
        254,
        254,
        ANALYSED,
    ]
    assert skipped_counts(codes) == {"out_of_focus": 1, "other": 3}


def test_codes_of_an_empty_batch():
    probabilities, codes = codes_of(answer([]))
    assert probabilities.shape == codes.shape == (0,)
    assert skipped_counts(codes) == {}


def test_skipped_counts_name_every_reason_and_count_no_analysed_tile():
    codes = np.array(
        [ANALYSED] * 5 + [code for code in REASON_CODES.values() for _ in range(code)],
        dtype=np.uint8,
    )
    assert skipped_counts(codes) == {name: code for name, code in REASON_CODES.items()}
    assert skipped_counts(np.zeros(10, dtype=np.uint8)) == {}
    # Codes no reason has are counted together rather than dropped.
    assert skipped_counts(np.array([200, 201, UNKNOWN_REASON], dtype=np.uint8)) == {"other": 3}
    # The background code is not a reason: the runner leaves it out before counting.
    assert BACKGROUND not in REASON_CODES.values()
