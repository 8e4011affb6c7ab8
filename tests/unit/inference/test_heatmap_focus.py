"""Where a Grad-CAM map concentrates, in the words the assistant uses."""

import numpy as np
import pytest

from inference_service.serving.predictor import heatmap_focus, region_name


def blob(size: int, rows: slice, columns: slice, background: float = 0.0) -> np.ndarray:
    cam = np.full((size, size), background)
    cam[rows, columns] = 1.0
    return cam


@pytest.mark.parametrize(
    ("y", "x", "name"),
    [
        (0.1, 0.1, "upper left"),
        (0.1, 0.5, "upper centre"),
        (0.2, 0.9, "upper right"),
        (0.5, 0.1, "middle left"),
        (0.5, 0.5, "centre"),
        (0.5, 0.99, "middle right"),
        (0.9, 0.1, "lower left"),
        (0.9, 0.5, "lower centre"),
        (1.0, 1.0, "lower right"),
    ],
)
def test_region_names_on_a_three_by_three_grid(y, x, name):
    assert region_name(y, x) == name


def test_a_small_hot_spot_is_focal_where_it_is():
    cam = blob(12, slice(0, 3), slice(9, 12), background=0.1)  # top right, 9 of 144 cells
    focus = heatmap_focus(cam)
    assert (focus.region, focus.peak_region, focus.spread) == (
        "upper right",
        "upper right",
        "focal",
    )
    assert focus.hot_area_fraction == pytest.approx(9 / 144, abs=1e-3)


def test_a_large_hot_area_is_diffuse_and_its_centre_is_weighted():
    cam = blob(10, slice(0, 10), slice(0, 6))  # the left 60 %
    cam[9, 0] = 1.0
    focus = heatmap_focus(cam)
    assert focus.spread == "diffuse"
    assert focus.region == "middle left"
    assert focus.hot_area_fraction == pytest.approx(0.6)


def test_a_moderate_area_and_the_strongest_cell_apart_from_the_centre():
    cam = blob(10, slice(3, 8), slice(3, 8), background=0.0) * 0.6  # 25 % of the image
    cam[7, 7] = 1.0  # the strongest cell, lower right of the centre block
    focus = heatmap_focus(cam)
    assert focus.spread == "moderate"
    assert focus.region == "centre"
    assert focus.peak_region == "lower right"


def test_a_map_with_nothing_in_it_says_so():
    focus = heatmap_focus(np.zeros((8, 8)))
    assert (focus.region, focus.peak_region, focus.hot_area_fraction, focus.spread) == (
        None,
        None,
        0.0,
        "none",
    )
    assert focus.areas == 0
    # Not-a-number (a model gone wrong) is no activation, not a crash.
    assert heatmap_focus(np.full((8, 8), np.nan)).spread == "none"


def test_two_hot_spots_are_named_by_the_strongest_not_by_the_empty_middle():
    cam = np.zeros((12, 12))
    cam[0:3, 0:3] = 1.0  # upper left, the strongest
    cam[9:12, 9:12] = 0.9  # lower right
    focus = heatmap_focus(cam)
    assert focus.areas == 2
    assert (focus.region, focus.peak_region, focus.spread) == ("upper left", "upper left", "focal")
