"""The Slides page in a real browser against the real stack, slide service and its worker
included: a clinician uploads the real Aperio slide, sees its thumbnail and metadata, zooms to
full resolution and pans; then analyses it, follows the job, reads the heatmap, the tissue
mask and the regions, reviews them and downloads them as GeoJSON. A screenshot is kept of
each step; the bearer token never reaches the browser, and every request goes to the app's
own origin."""

import json
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import geojson
import httpx
import pytest
from playwright.sync_api import Frame, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from frontend.components.slide_analysis import viewport_rect
from tests.browser.conftest import PASSWORD
from tests.browser.ui import TIMEOUT_MS, go, header, metric, open_app, screenshot, settle, sign_in
from tests.support.images import png_bytes
from tests.support.slides import real_svs_path
from tests.support.tokens import bearer, issued_token

pytestmark = pytest.mark.timeout(900)
COMPONENT = 'iframe[title*="slide_viewer"]'


def component_frame(page: Page, which: str, part: str) -> Frame:
    """The frame of the Slides component ("first" or "last" on the page) once it shows `part`
    ("upload" or "viewer-box")."""
    iframe = getattr(page.locator(COMPONENT), which)
    expect(iframe.content_frame.locator(f"#{part}")).to_be_visible()
    frame = iframe.element_handle().content_frame()
    assert frame is not None
    return frame


def send_through_the_page(page: Page, path: Path) -> Frame:
    """On the Slides page of a signed-in clinician: a new patient reference, then the file
    through the upload component; returns that component's frame."""
    expect(header(page, "Analyse images")).to_be_visible()
    go(page, "Slides", "Slides")
    reference = f"S-{uuid.uuid4().hex[:8]}"
    page.get_by_role("textbox", name="Patient reference", exact=True).fill(reference)
    page.get_by_role("button", name="Choose the file").click()
    expect(page.get_by_text(f"For patient {reference}")).to_be_visible()
    settle(page)
    upload = component_frame(page, "first", "upload")
    upload.locator("#file").set_input_files(str(path))
    upload.get_by_role("button", name="Upload slide").click()
    return upload


def body_number(frame: Frame, name: str) -> float:
    return float(frame.evaluate(f"() => Number(document.body.dataset.{name} ?? -1)"))


def wait_until(frame: Frame, condition: str, what: str, arg: object = None) -> None:
    """Wait, at most the tests' deadline, until `condition` holds in `frame`; say `what` if not."""
    try:
        frame.wait_for_function(condition, arg=arg, timeout=TIMEOUT_MS)
    except PlaywrightTimeoutError:
        status = frame.evaluate("() => document.getElementById('viewer-status').textContent")
        raise AssertionError(
            f"not within {TIMEOUT_MS} ms: {what} (viewer says {status!r})"
        ) from None


def test_a_clinician_uploads_the_real_slide_zooms_to_full_resolution_and_pans(
    browser, stack, new_user, screenshots_dir
):
    page = open_app(browser, stack.url("frontend"))
    seen: list[tuple[str, dict[str, str]]] = []
    page.on("request", lambda request: seen.append((request.url, request.headers)))
    sign_in(page, new_user("clinician"), PASSWORD)
    upload = send_through_the_page(page, real_svs_path())
    # The bar follows the XHR's upload events, to the last byte, then the server's answer.
    expect(upload.locator("#upload-status")).to_have_text(
        "Stored cmu_small_region.svs.", timeout=120_000
    )
    assert upload.evaluate("() => document.getElementById('progress').value") == 1
    screenshot(page, screenshots_dir, "slides-1-uploaded")

    # The page reruns with the stored slide listed and opened.
    expect(header(page, "Viewer: cmu_small_region.svs")).to_be_visible()
    settle(page)
    listed = page.get_by_test_id("stImage").locator("img").first
    expect(listed).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    page.locator(COMPONENT).last.scroll_into_view_if_needed()  # the viewer and its facts
    for fact in ["Vendor: aperio", "Dimensions: 2,220 x 2,967 px", "Objective: 20x"]:
        expect(page.get_by_text(fact, exact=True)).to_be_visible()
    expect(page.get_by_text("Resolution: 0.499 µm/px (from the file)", exact=True)).to_be_visible()
    screenshot(page, screenshots_dir, "slides-2-thumbnail-and-metadata")

    viewer = component_frame(page, "last", "viewer-box")
    viewer.wait_for_function("() => Number(document.body.dataset.tilesLoaded || 0) > 0")
    expect(viewer.locator("#scalebar-label")).to_have_text(re.compile(r"^\d+(\.\d+)? (µm|mm)$"))

    # Full resolution: one screen pixel per slide pixel, and the pyramid's last level drawn.
    viewer.evaluate(
        "() => { const v = window.slideViewer;"
        " v.viewport.zoomTo(v.viewport.imageToViewportZoom(1.0), null, true); }"
    )
    viewer.wait_for_function(
        "() => document.body.dataset.maxLevelLoaded === document.body.dataset.maxLevel"
    )
    expect(viewer.locator("#viewer-status")).to_have_text("Zoom: 100.0 % of full resolution")
    # At 0.499 µm/px, 50 µm is 100 px on screen.
    expect(viewer.locator("#scalebar-label")).to_have_text("50 µm")
    width = viewer.evaluate("() => parseFloat(document.getElementById('scalebar-bar').style.width)")
    assert width == pytest.approx(50 / 0.499, abs=0.5)
    screenshot(page, screenshots_dir, "slides-3-full-resolution")

    # Pan by dragging, as a person does: the view moves and new full-resolution tiles come.
    before = viewer.evaluate("() => window.slideViewer.viewport.getCenter(true)")
    tiles_before = body_number(viewer, "tilesLoaded")
    page.locator(COMPONENT).last.scroll_into_view_if_needed()
    box = page.locator(COMPONENT).last.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + 300
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 400, y - 250, steps=12)
    page.mouse.up()
    viewer.wait_for_function(
        "([x, y, n]) => { const c = window.slideViewer.viewport.getCenter(true);"
        " return Math.abs(c.x - x) > 0.05 && Number(document.body.dataset.tilesLoaded) > n; }",
        arg=[before["x"], before["y"], tiles_before],
    )
    expect(viewer.locator("#viewer-status")).to_have_text("Zoom: 100.0 % of full resolution")
    screenshot(page, screenshots_dir, "slides-4-panned")

    # The grant runs out under the viewer: new tiles are refused and stay blank only until
    # the page hands over the next grant, with which the very same tiles load.
    grant = viewer.evaluate("() => view.grant")
    viewer.evaluate(
        "() => { view.grant = 'expired.grant.x'; const v = window.slideViewer;"
        " v.viewport.panTo(new OpenSeadragon.Point(0.05, 0.05), true); }"
    )
    expect(viewer.locator("#viewer-status")).to_contain_text("Some tiles could not be loaded")
    loaded = body_number(viewer, "tilesLoaded")
    viewer.evaluate(
        "(grant) => renderViewer({ mode: 'viewer', slide_id: view.slideId, grant,"
        " open_nonce: view.openNonce, mpp: view.mpp, height: 600 })",
        grant,
    )
    wait_until(
        viewer,
        "(n) => Number(document.body.dataset.tilesLoaded) > n"
        " && window.slideViewer.world.getItemAt(0).getFullyLoaded()",
        "the refused tiles loaded with the renewed grant",
        arg=loaded,
    )

    # Opening fails (the connection drops): the viewer says so, and View opens it again.
    dzi = re.compile(r"/slide-tiles/[^/?]+/dzi")
    page.route(dzi, lambda route: route.abort())
    view_button = page.get_by_role("button", name="View", exact=True).first
    # A click while the page script still runs can be dropped by the rerun it interrupts.
    settle(page)
    view_button.click()
    expect(viewer.locator("#viewer-status")).to_have_text(
        "The slide could not be opened: the connection failed. Press View to retry."
    )
    page.unroute(dzi)
    viewer.evaluate("() => { window.failedViewer = window.slideViewer; }")
    settle(page)
    view_button.click()
    wait_until(
        viewer,
        "() => window.slideViewer !== window.failedViewer"
        " && Number(document.body.dataset.tilesLoaded) > 0",
        "the slide opened again after View",
    )

    # Everything went to the app's own origin; no request of the page carried a bearer token,
    # and the tiles came through the relay with a grant.
    origin = urlsplit(stack.url("frontend")).netloc
    assert {urlsplit(url).netloc for url, _ in seen} == {origin}
    assert not [url for url, headers in seen if "authorization" in headers]
    tiles = [url for url, _ in seen if "/slide-tiles/" in url]
    assert tiles and all("grant=" in url for url in tiles)
    assert not [url for url, _ in seen if "/api/v1/" in url]


def test_a_plain_image_sent_as_a_slide_is_refused_with_what_to_do(
    browser, stack, new_user, tmp_path, screenshots_dir
):
    renamed = tmp_path / "photo.svs"
    renamed.write_bytes(png_bytes(5, 64))
    page = open_app(browser, stack.url("frontend"))
    sign_in(page, new_user("clinician"), PASSWORD)
    upload = send_through_the_page(page, renamed)
    expect(upload.locator("#upload-status")).to_have_text("photo.svs was not stored.")
    expect(page.get_by_test_id("stAlert").filter(has_text="was not stored")).to_contain_text(
        "photo.svs was not stored: This is a plain image, not a whole scanned slide. To "
        "analyse a single image, use the Analyse page."
    )
    expect(page.get_by_text("Reference for support: request")).to_be_visible()
    screenshot(page, screenshots_dir, "slides-5-plain-image-refused")


def viewport_bounds(viewer: Frame) -> dict[str, float]:
    return viewer.evaluate(
        "() => { const b = window.slideViewer.viewport.getBounds(true);"
        " return { x: b.x, y: b.y, width: b.width, height: b.height }; }"
    )


def test_a_clinician_analyses_the_real_slide_and_reviews_its_regions(
    browser, stack, new_user, screenshots_dir, tmp_path
):
    email = new_user("clinician")
    page = open_app(browser, stack.url("frontend"))
    sign_in(page, email, PASSWORD)
    upload = send_through_the_page(page, real_svs_path())
    expect(upload.locator("#upload-status")).to_have_text(
        "Stored cmu_small_region.svs.", timeout=120_000
    )
    expect(header(page, "Viewer: cmu_small_region.svs")).to_be_visible()
    settle(page)
    expect(page.get_by_text("This slide has not been analysed yet.")).to_be_visible()
    viewer = component_frame(page, "last", "viewer-box")
    viewer.wait_for_function("() => Number(document.body.dataset.tilesLoaded || 0) > 0")

    # No worker for a moment, so the queued job is seen waiting; then one comes and takes it.
    stopped = stack.supervisorctl("stop", "slide-worker")
    assert "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    try:
        page.get_by_role("button", name="Analyse this slide").click()
        bar = page.get_by_test_id("stProgress")
        expect(bar).to_contain_text("Waiting for a worker to start the analysis")
        expect(page.get_by_role("button", name="Cancel the analysis")).to_be_visible()
        screenshot(page, screenshots_dir, "analysis-1-queued")
    finally:
        started = stack.supervisorctl("start", "slide-worker")
        assert "started" in started.stdout, started.stdout + started.stderr
    # The page follows the job on its own and shows the result when it ends.
    expect(page.get_by_text("Suspicious regions", exact=False)).to_be_visible(timeout=300_000)
    settle(page)
    assert int(metric(page, "Tiles assessed").replace(",", "")) > 0
    assert re.fullmatch(r"\d+(\.\d)? %", metric(page, "Tumour area"))
    assert re.fullmatch(r"peak [01]\.\d\d", metric(page, "Highest region"))
    expect(
        page.get_by_text(re.compile(r"^Tumour: .* mm² of tissue\. Skipped: .*background tiles"))
    ).to_be_visible()

    # The heatmap lies over the slide as deep-zoom tiles of its own.
    wait_until(
        viewer,
        "() => document.body.dataset.heatmap === 'shown'"
        " && Number(document.body.dataset.heatmapTilesLoaded || 0) > 0",
        "the heatmap shown over the slide",
    )
    assert viewer.evaluate("() => window.slideViewer.world.getItemCount()") == 2
    assert viewer.evaluate("() => view.heatmap.getOpacity()") == pytest.approx(0.5)
    screenshot(page, screenshots_dir, "analysis-2-heatmap")

    # Opacity from the page's slider, and the tissue mask on demand.
    slider = page.get_by_test_id("stSlider").filter(has_text="Heatmap opacity")
    slider.get_by_role("slider").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    wait_until(
        viewer,
        "() => Math.abs(view.heatmap.getOpacity() - 0.6) < 1e-6",
        "the heatmap's opacity at 0.60 after two steps of the slider",
    )
    settle(page)
    page.get_by_text("Show the tissue mask", exact=True).click()
    wait_until(
        viewer,
        "() => document.body.dataset.mask === 'shown'"
        " && window.slideViewer.world.getItemCount() === 3",
        "the tissue mask shown over the slide",
    )
    screenshot(page, screenshots_dir, "analysis-3-opacity-and-mask")

    # The regions, as the API gives them, are the ones listed; the first is zoomed to.
    analysis_id = viewer.evaluate("() => view.analysisId")
    slide_width = viewer.evaluate("() => window.slideViewer.world.getItemAt(0).source.width")
    with httpx.Client(base_url=stack.url("gateway"), timeout=30) as api:
        token = issued_token(
            api.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
        )
        regions = api.get(f"/api/v1/analyses/{analysis_id}/regions", headers=bearer(token))
    assert regions.status_code == 200, regions.text
    listed = regions.json()
    assert listed, "the demo model found no region on the real slide: nothing to review"
    first = listed[0]
    settle(page)
    page.get_by_role("button", name="Region 1", exact=True).click()
    target = viewport_rect(first["bounds"], slide_width)
    wait_until(
        viewer,
        "(t) => { const v = window.slideViewer.viewport; const b = v.getBounds(true);"
        " const c = v.getCenter(true); const near = (a, e, s) => Math.abs(a - e) <= 0.02 * s;"
        " return document.body.dataset.focus && near(c.x, t.x + t.width / 2, t.width)"
        " && near(c.y, t.y + t.height / 2, t.height)"
        " && b.width >= t.width * 0.98 && b.height >= t.height * 0.98; }",
        f"the viewer centred on region 1 and showing all of it ({target})",
        arg=target,
    )
    bounds = viewport_bounds(viewer)
    # Fitted, not merely centred: one side of the view is the region's (with its margin),
    # unless the region is so small that the viewer's closest zoom still shows more.
    at_closest = viewer.evaluate(
        "() => { const v = window.slideViewer.viewport;"
        " return v.getZoom(true) >= 0.999 * v.getMaxZoom(); }"
    )
    fitted = min(bounds["width"] / target["width"], bounds["height"] / target["height"])
    assert at_closest or fitted < 1.05, (bounds, target)
    expect(page.get_by_text(re.compile(r"^Region 1: peak \d\.\d\d"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Tile 1 · p = \d\.\d\d · with Grad-CAM$"))).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    screenshot(page, screenshots_dir, "analysis-4-region-1")

    # Reviews: the region corrected to benign with a comment, and a verdict on the slide.
    page.get_by_text("Correct the label", exact=True).click()
    settle(page)
    expect(page.get_by_text("Correct label", exact=True)).to_be_visible()
    page.get_by_label("Comment on the region (optional)").fill("Reactive stroma, not IDC.")
    page.get_by_role("button", name="Record the region review").click()
    expect(page.get_by_text("Review of region 1 recorded.")).to_be_visible()
    expect(
        page.get_by_text(re.compile(r"reviewed: correct the label to benign")).first
    ).to_be_visible()
    settle(page)
    page.get_by_text("Malignant", exact=True).click()
    settle(page)
    page.get_by_label("Comment on the slide (optional)").fill("Correlate with the resection.")
    page.get_by_role("button", name="Record the slide verdict").click()
    expect(page.get_by_text("Slide verdict recorded: malignant.")).to_be_visible()
    screenshot(page, screenshots_dir, "analysis-5-reviewed")
    with httpx.Client(base_url=stack.url("gateway"), timeout=30) as api:
        stored = api.get(f"/api/v1/analyses/{analysis_id}/reviews", headers=bearer(token))
        again = api.get(f"/api/v1/analyses/{analysis_id}/regions", headers=bearer(token))
    assert stored.status_code == 200, stored.text
    assert again.json()[0]["review"]["verdict"] == "correct"
    assert again.json()[0]["review"]["corrected_label"] == "benign"
    assert again.json()[0]["review"]["comment"] == "Reactive stroma, not IDC."

    # The regions as GeoJSON, as QuPath would import them: one feature per region.
    settle(page)
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download the regions (GeoJSON)").click()
    download = download_info.value
    assert download.suggested_filename == f"regions-{analysis_id}.geojson"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    document = geojson.loads(saved.read_text())
    assert document.is_valid, document.errors()
    assert document["type"] == "FeatureCollection"
    assert len(document["features"]) == len(listed)
    assert json.loads(saved.read_text())["features"][0]["geometry"]["type"] in (
        "Polygon",
        "MultiPolygon",
    )
