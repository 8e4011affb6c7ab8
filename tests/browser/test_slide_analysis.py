"""A slide analysis in a real browser against the real stack, worker included: a clinician
uploads the real Aperio slide, analyses it, follows the progress bar to the end, sees the
heatmap over the slide and changes its opacity, opens a region (the viewer zooms to it, its
top tiles show with Grad-CAM), reviews it, records a verdict on the slide and downloads the
regions as GeoJSON; a screenshot of each step."""

import json
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD
from tests.browser.test_slides import COMPONENT, component_frame, send_through_the_page, wait_until
from tests.browser.ui import header, open_app, screenshot, settle, sign_in
from tests.support.slides import real_svs_path

pytestmark = pytest.mark.timeout(1800)
# The whole slide, tile by tile, on a shared CI machine's CPU.
ANALYSIS_DEADLINE_S = 900


def wait_for_the_analysis(page: Page) -> None:
    """Until the progress bar is gone and the summary is shown, at most the deadline; the
    last thing the bar said is in the failure."""
    deadline = time.monotonic() + ANALYSIS_DEADLINE_S
    bar = page.get_by_test_id("stProgress")
    last = ""
    while time.monotonic() < deadline:
        if page.get_by_test_id("stMetric").filter(has_text="Tiles assessed").count():
            return
        failed = page.get_by_test_id("stAlert").filter(has_text="The analysis failed")
        if failed.count():
            raise AssertionError(f"the analysis failed: {failed.first.inner_text()}")
        if bar.count():
            last = bar.first.inner_text()
        page.wait_for_timeout(2000)
    raise AssertionError(
        f"not within {ANALYSIS_DEADLINE_S} s: the analysis of cmu_small_region.svs reaching "
        f"'succeeded' (the progress bar last said {last!r})"
    )


def test_a_clinician_analyses_the_real_slide_and_reviews_a_region(
    browser, stack, new_user, tmp_path, screenshots_dir
):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    page = open_app(browser, stack.url("frontend"))
    seen: list[tuple[str, dict[str, str]]] = []
    page.on("request", lambda request: seen.append((request.url, request.headers)))
    sign_in(page, new_user("clinician"), PASSWORD)
    upload = send_through_the_page(page, real_svs_path())
    expect(upload.locator("#upload-status")).to_have_text(
        "Stored cmu_small_region.svs.", timeout=120_000
    )
    expect(header(page, "Viewer: cmu_small_region.svs")).to_be_visible()
    settle(page)
    expect(page.get_by_text("This slide has not been analysed yet.")).to_be_visible()

    # Start: the page follows the job with a progress bar (and offers to cancel it).
    page.get_by_role("button", name="Analyse this slide").click()
    expect(page.get_by_test_id("stProgress")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel the analysis")).to_be_visible()
    screenshot(page, artifacts, "analysis-1-progress")
    wait_for_the_analysis(page)
    settle(page)
    expect(page.get_by_test_id("stProgress")).to_have_count(0)
    screenshot(page, artifacts, "analysis-2-summary")

    # The heatmap is a second tiled image over the slide, aligned with it.
    viewer = component_frame(page, "last", "viewer-box")
    wait_until(
        viewer,
        "() => document.body.dataset.heatmap === 'shown'"
        " && Number(document.body.dataset.heatmapTilesLoaded || 0) > 0",
        "the heatmap shown over the slide with some of its tiles loaded",
    )
    assert viewer.evaluate("() => window.slideViewer.world.getItemCount()") >= 2
    heatmap_bounds = viewer.evaluate(
        "() => { const b = window.slideViewer.world.getItemAt(1).getBounds();"
        " return [b.x, b.y, b.width]; }"
    )
    assert heatmap_bounds == pytest.approx([0, 0, 1])
    assert viewer.evaluate(
        "() => window.slideViewer.world.getItemAt(1).getOpacity()"
    ) == pytest.approx(0.5)
    page.locator(COMPONENT).last.scroll_into_view_if_needed()
    screenshot(page, artifacts, "analysis-3-heatmap")

    # The opacity slider: the keyboard moves it a step at a time, the viewer follows.
    slider = page.get_by_role("slider", name="Heatmap opacity")
    slider.focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    settle(page)
    wait_until(
        viewer,
        "() => Math.abs(window.slideViewer.world.getItemAt(1).getOpacity() - 0.7) < 1e-6",
        "the heatmap's opacity following the slider to 0.7",
    )
    # The tissue mask, as one more image over both.
    page.get_by_text("Show the tissue mask").click()
    settle(page)
    wait_until(viewer, "() => document.body.dataset.mask === 'shown'", "the tissue mask shown")
    screenshot(page, artifacts, "analysis-4-opacity-and-mask")

    # A region: the viewer zooms to its bounds; its top tiles show with Grad-CAM.
    zoom_before = viewer.evaluate("() => window.slideViewer.viewport.getZoom(true)")
    page.get_by_role("button", name="Region 1", exact=True).click()
    settle(page)
    wait_until(
        viewer,
        "(zoom) => document.body.dataset.focus"
        " && window.slideViewer.viewport.getZoom(true) > zoom * 1.01",
        "the viewer zoomed in to region 1",
        arg=zoom_before,
    )
    tiles = page.get_by_test_id("stImage").filter(has_text="Tile 1")
    expect(tiles.first).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    screenshot(page, artifacts, "analysis-5-region")

    # Review it (a correction, with a comment), then the verdict on the slide.
    page.get_by_text("Correct the label", exact=True).click()
    settle(page)
    page.get_by_role("textbox", name="Comment on the region (optional)").fill(
        "Sclerosing adenosis, not carcinoma."
    )
    page.get_by_role("button", name="Record the region review").click()
    expect(page.get_by_text("Review of region 1 recorded.")).to_be_visible()
    settle(page)
    expect(page.get_by_text("reviewed: correct the label to benign").first).to_be_visible()
    page.get_by_text("Indeterminate", exact=True).click()
    page.get_by_role("button", name="Record the slide verdict").click()
    expect(page.get_by_text("Slide verdict recorded: indeterminate.")).to_be_visible()
    settle(page)
    screenshot(page, artifacts, "analysis-6-reviewed")

    # The regions as GeoJSON, as QuPath imports them.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the regions (GeoJSON)").click()
    saved = artifacts / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name.startswith("regions-") and saved.suffix == ".geojson"
    collection = json.loads(saved.read_text())
    assert collection["type"] == "FeatureCollection" and collection["features"]
    assert collection["features"][0]["geometry"]["type"] in ("Polygon", "MultiPolygon")

    # The heatmap and the mask came through the app's relay with a grant, never a bearer.
    overlays = [url for url, _ in seen if "/analysis-tiles/" in url]
    assert overlays and all("grant=" in url for url in overlays)
    assert not [url for url, headers in seen if "authorization" in headers]
    assert not [url for url, _ in seen if "/api/v1/" in url]
    for shot in artifacts.glob("*.png"):
        (screenshots_dir / shot.name).write_bytes(shot.read_bytes())
