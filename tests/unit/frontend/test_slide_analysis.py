"""The Slides page's analysis logic that needs no page: where the viewer zooms for a region,
what the progress bar says, and how the summary and refusals read."""

import pytest

from frontend.components.slide_analysis import (
    duration_text,
    not_offered,
    progress_fraction,
    progress_text,
    region_line,
    skipped_text,
    start_error_message,
    summary_facts,
    viewport_rect,
)
from frontend.utils.gateway_client import GatewayError


def analysis(status: str, **progress) -> dict:
    base = {"tiles_done": 0, "tiles_total": None, "fraction": None, "tiles_per_s": None}
    return {"status": status, "progress": base | {"eta_s": None} | progress, "error": None}


def test_a_regions_bounds_become_viewport_coordinates_over_the_slides_width():
    # The real SVS is 2220 px wide: viewport x and y are both level-0 px / 2220.
    rect = viewport_rect({"x": 1110, "y": 2220, "width": 222, "height": 444}, 2220, margin=0)
    assert rect == pytest.approx({"x": 0.5, "y": 1.0, "width": 0.1, "height": 0.2})


def test_the_margin_widens_the_rectangle_on_every_side_around_the_same_centre():
    bounds = {"x": 1000, "y": 500, "width": 200, "height": 100}
    rect = viewport_rect(bounds, 2000, margin=0.25)
    assert rect == pytest.approx({"x": 0.475, "y": 0.2375, "width": 0.15, "height": 0.075})
    tight = viewport_rect(bounds, 2000, margin=0)
    for centre in ("x", "y"):
        size = "width" if centre == "x" else "height"
        assert rect[centre] + rect[size] / 2 == pytest.approx(tight[centre] + tight[size] / 2)


def test_a_slide_without_width_has_no_viewport():
    with pytest.raises(ValueError):
        viewport_rect({"x": 0, "y": 0, "width": 1, "height": 1}, 0)


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (None, None),
        (-1, None),
        (float("inf"), None),
        (0, "under a minute"),
        (59.9, "under a minute"),
        (60, "about 1 min"),
        (61, "about 2 min"),
        (3540, "about 59 min"),
        (3600, "about 1 h 00 min"),
        (2 * 3600 + 5 * 60, "about 2 h 05 min"),
    ],
)
def test_the_time_left_reads_as_people_say_it(seconds, said):
    assert duration_text(seconds) == said


def test_a_running_analysis_says_tiles_done_of_all_the_rate_and_the_time_left():
    running = analysis(
        "running", tiles_done=1234, tiles_total=5000, fraction=0.2468, tiles_per_s=41.26, eta_s=90
    )
    assert progress_fraction(running) == pytest.approx(0.2468)
    assert progress_text(running) == "1,234 of 5,000 tiles (25 %) · 41.3 tiles/s · about 2 min left"


def test_without_a_rate_yet_only_the_count_is_said():
    running = analysis("running", tiles_done=0, tiles_total=800, fraction=0.0)
    assert progress_text(running) == "0 of 800 tiles (0 %)"


def test_before_the_tissue_is_found_there_is_no_total():
    running = analysis("running")
    assert progress_fraction(running) == 0.0
    assert progress_text(running) == "Finding the tissue on the slide…"


def test_a_queued_analysis_waits_and_says_why_it_retries():
    queued = analysis("queued")
    assert progress_text(queued) == "Waiting for a worker to start the analysis…"
    queued["error"] = {"code": "inference_unavailable", "message": "The model did not answer."}
    assert progress_text(queued) == (
        "Waiting for a worker to start the analysis (it will try again: The model did not answer.)…"
    )


def test_the_fraction_comes_from_the_counts_when_missing_and_stays_within_the_bar():
    assert progress_fraction(analysis("running", tiles_done=30, tiles_total=120)) == 0.25
    assert progress_fraction(analysis("running", tiles_done=5, fraction=1.7)) == 1.0
    assert progress_fraction(analysis("succeeded", tiles_done=5, fraction=0.5)) == 1.0
    done = analysis("succeeded", tiles_done=120, tiles_total=120, fraction=1.0, tiles_per_s=9.0)
    assert progress_text(done) == "120 of 120 tiles (100 %)"  # no rate once it is over


def test_a_refusal_to_start_says_what_to_do_and_keeps_the_gateways_reason():
    busy = GatewayError("Slide is being analysed.", 409, code="analysis_in_progress")
    assert start_error_message(busy) == (
        "This slide is being analysed already; follow it below. (Slide is being analysed.)"
    )
    other = GatewayError("The queue is away.", 503, code="queue_unavailable")
    assert start_error_message(other) == "The queue is away."


def test_only_a_missing_route_means_the_gateway_offers_no_analyses():
    assert not_offered(GatewayError("No route.", 404, code="not_found"))
    assert not not_offered(GatewayError("No such slide.", 404, code="slide_not_found"))
    assert not not_offered(GatewayError("Down.", 503, code="not_found"))


def test_the_summary_names_its_figures_and_the_skipped_tiles_by_reason():
    summary = {
        "tiles_total": 520,
        "tiles_assessed": 500,
        "tiles_skipped": {"out_of_focus": 12, "no_tissue": 8, "other": 0},
        "background_tiles": 1340,
        "tumour_area_fraction": 0.126,
        "tumour_area_mm2": 1.5,
        "tissue_area_mm2": 12.0,
        "regions": 3,
        "highest_region": {"id": "r", "rank": 1, "peak_probability": 0.973, "area_mm2": 0.4},
        "model_version": "v7",
        "threshold": 0.5,
    }
    facts = summary_facts(summary)
    assert facts == {
        "Tiles assessed": "500",
        "Tumour area": "12.6 %",
        "Regions": "3",
        "Highest region": "peak 0.97",
        "Areas": "1.50 of 12.00 mm² of tissue",
        "Model": "v7",
        "Threshold": "0.50",
    }
    # Reasons named as everywhere else in the app; none that counted zero.
    assert skipped_text(summary) == (
        "Skipped: No tissue found: 8, Out of focus: 12; 1,340 background tiles (no tissue) "
        "left out."
    )
    empty = {"tiles_skipped": {}, "highest_region": None, "regions": 0}
    assert skipped_text(empty) == "Skipped: none."
    assert summary_facts(empty)["Highest region"] == "none"


def test_a_region_line_says_its_figures_and_its_review():
    region = {
        "peak_probability": 0.914,
        "mean_probability": 0.702,
        "area_mm2": 0.0512,
        "tile_count": 7,
        "review": None,
    }
    assert region_line(region) == "peak 0.91 · mean 0.70 · 0.051 mm² · 7 tiles"
    region["review"] = {"verdict": "correct", "corrected_label": "benign"}
    assert region_line(region).endswith(" · reviewed: correct the label to benign")
