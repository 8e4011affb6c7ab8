"""A slide's analysis on the Slides page: start one, follow it tile by tile (or cancel it),
then read it: the heatmap over the slide, the summary, the suspicious regions with their top
tiles and Grad-CAM, a review of each region and a verdict on the slide, and the regions as
GeoJSON for QuPath.

The analysis runs as a job on the slide service's queue; this page only asks the gateway how
far it is, every few seconds, while it waits or runs.
"""

import math
import uuid
from contextlib import closing
from functools import partial
from typing import Any

import streamlit as st

from frontend.components.assessment import reason_name
from frontend.components.widgets import cached_image, percent, plain, show_error
from frontend.utils.gateway_client import GatewayClient, GatewayError

WRITERS = frozenset({"admin", "clinician"})
ACTIVE = frozenset({"queued", "running"})
POLL_S = 2.0
# How much room is left around a region when the viewer zooms to it, per side, as a
# fraction of the region's own width and height.
FOCUS_MARGIN = 0.25
FOCUS_KEY = "slide_analysis_focus"
FLASH_KEY = "slide_analysis_flash"
REGION_VERDICTS = {
    "agree": "Agree",
    "correct": "Correct the label",
    "dismiss": "Dismiss",
}
SLIDE_VERDICTS = ("benign", "malignant", "indeterminate")
# What to do about each refusal to start, beside the gateway's own sentence.
START_ADVICE = {
    "analysis_in_progress": "This slide is being analysed already; follow it below.",
    "slide_resolution_unknown": (
        "The slide's resolution is unknown, so it cannot be cut into tiles at the model's "
        "scale. Upload it again with its microns per pixel."
    ),
    "too_many_analyses": (
        "You have too many analyses waiting or running; start this one when one finishes."
    ),
    "no_model_scale": (
        "The active model does not record the scale it was trained at, so slides cannot be "
        "analysed with it. Ask an administrator to activate a model that does."
    ),
}


# -- pure ----------------------------------------------------------------------------------------


def viewport_rect(
    bounds: dict[str, float], slide_width: float, margin: float = FOCUS_MARGIN
) -> dict[str, float]:
    """A region's level-0 pixel bounds as an OpenSeadragon viewport rectangle: the slide's
    width is 1 in viewport coordinates, so x, y, width and height are all divided by it.
    `margin` leaves that fraction of the region's size free on each side."""
    if slide_width <= 0:
        raise ValueError("the slide's width must be positive")
    pad_x, pad_y = bounds["width"] * margin, bounds["height"] * margin
    return {
        "x": (bounds["x"] - pad_x) / slide_width,
        "y": (bounds["y"] - pad_y) / slide_width,
        "width": (bounds["width"] + 2 * pad_x) / slide_width,
        "height": (bounds["height"] + 2 * pad_y) / slide_width,
    }


def duration_text(seconds: float | None) -> str | None:
    """A time left as people say it: "under a minute", "about 4 min", "about 2 h 05 min"."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    if seconds < 60:
        return "under a minute"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


def progress_fraction(analysis: dict[str, Any]) -> float:
    """How far the analysis is, 0 to 1, for the progress bar."""
    if analysis["status"] == "succeeded":
        return 1.0
    progress = analysis.get("progress") or {}
    fraction = progress.get("fraction")
    if fraction is None:
        done, total = progress.get("tiles_done") or 0, progress.get("tiles_total")
        fraction = done / total if total else 0.0
    return min(max(float(fraction), 0.0), 1.0)


def progress_text(analysis: dict[str, Any]) -> str:
    """The line under the progress bar: tiles done of all, the rate and the time left."""
    status = analysis["status"]
    progress = analysis.get("progress") or {}
    done, total = progress.get("tiles_done") or 0, progress.get("tiles_total")
    if status == "queued":
        text = "Waiting for a worker to start the analysis"
        error = analysis.get("error")
        if error and error.get("message"):
            text += f" (it will try again: {error['message']})"
        return text + "…"
    if status == "running" and total is None:
        return "Finding the tissue on the slide…"
    if total is None:
        return f"{done:,} tiles analysed"
    parts = [f"{done:,} of {total:,} tiles ({percent(progress_fraction(analysis), 0)})"]
    if status in ACTIVE:
        rate = progress.get("tiles_per_s")
        if rate:
            parts.append(f"{rate:.1f} tiles/s")
        if left := duration_text(progress.get("eta_s")):
            parts.append(f"{left} left")
    return " · ".join(parts)


def not_offered(exc: GatewayError) -> bool:
    """The gateway has no such route at all (`not_found`, unlike `slide_not_found`): one
    older than slide analyses, which the page then leaves out rather than calls a failure."""
    return exc.status_code == 404 and exc.code == "not_found"


def start_error_message(exc: GatewayError) -> str:
    advice = START_ADVICE.get(exc.code or "")
    return f"{advice} ({exc.message})" if advice else exc.message


def skipped_text(summary: dict[str, Any]) -> str:
    """The tissue tiles the model gave no verdict, by reason, and the background left out."""
    skipped = {reason: n for reason, n in (summary.get("tiles_skipped") or {}).items() if n}
    parts = [f"{reason_name(reason)}: {n:,}" for reason, n in sorted(skipped.items())]
    text = "Skipped: " + (", ".join(parts) if parts else "none")
    background = summary.get("background_tiles")
    if background:
        text += f"; {background:,} background tiles (no tissue) left out"
    return text + "."


def summary_facts(summary: dict[str, Any]) -> dict[str, str]:
    """The summary's figures, named for people: short values for the metric boxes, and the
    areas behind the tumour fraction for the line under them."""
    highest = summary.get("highest_region")
    tumour_mm2, tissue_mm2 = summary.get("tumour_area_mm2"), summary.get("tissue_area_mm2")
    areas = ""
    if tumour_mm2 is not None and tissue_mm2 is not None:
        areas = f"{tumour_mm2:.2f} of {tissue_mm2:.2f} mm² of tissue"
    return {
        "Tiles assessed": f"{summary.get('tiles_assessed', 0):,}",
        "Tumour area": percent(summary.get("tumour_area_fraction")),
        "Regions": str(summary.get("regions", 0)),
        # Regions are sorted by peak: the highest is region 1.
        "Highest region": "none" if not highest else f"peak {highest['peak_probability']:.2f}",
        "Areas": areas,
        "Model": f"{summary.get('model_version') or '—'}",
        "Threshold": ("—" if summary.get("threshold") is None else f"{summary['threshold']:.2f}"),
    }


def region_line(region: dict[str, Any]) -> str:
    text = (
        f"peak {region['peak_probability']:.2f} · mean {region['mean_probability']:.2f} · "
        f"{region['area_mm2']:.3f} mm² · {region['tile_count']} tiles"
    )
    review = region.get("review")
    if review:
        verdict = REGION_VERDICTS.get(review["verdict"], review["verdict"]).lower()
        if review.get("corrected_label"):
            verdict += f" to {review['corrected_label']}"
        text += f" · reviewed: {verdict}"
    return text


# -- state ---------------------------------------------------------------------------------------


def latest_analysis(client: GatewayClient, slide_id: str) -> dict[str, Any] | bool | None:
    """The slide's newest analysis, or None; False when the gateway offers no analyses. A
    failure is said and taken as none."""
    try:
        analyses = client.slide_analyses(slide_id)
    except GatewayError as exc:
        if not_offered(exc):
            return False
        show_error(exc, "load the slide's analyses")
        return None
    return analyses[0] if analyses else None


def select_region(analysis_id: str, region: dict[str, Any], slide_width: int) -> None:
    """Chosen in a button's callback, so the viewer drawn above it already zooms there."""
    st.session_state[FOCUS_KEY] = {
        "analysis_id": analysis_id,
        "region_id": region["id"],
        "rect": viewport_rect(region["bounds"], slide_width),
        "nonce": uuid.uuid4().hex,
    }


def viewer_arguments(analysis: dict[str, Any] | bool | None) -> dict[str, Any]:
    """What the viewer component needs about the analysis: the heatmap of a finished one, the
    opacity and mask chosen on the page, and the region to zoom to."""
    if not isinstance(analysis, dict) or analysis["status"] != "succeeded":
        return {"analysis_id": None, "heatmap_opacity": 0.5, "show_mask": False, "focus": None}
    analysis_id = analysis["id"]
    focus = st.session_state.get(FOCUS_KEY)
    if focus and focus["analysis_id"] != analysis_id:
        focus = None
    return {
        "analysis_id": analysis_id,
        "heatmap_opacity": st.session_state.get(f"heatmap-opacity-{analysis_id}", 0.5),
        "show_mask": st.session_state.get(f"tissue-mask-{analysis_id}", False),
        "focus": focus and {**focus["rect"], "nonce": focus["nonce"]},
    }


# -- page ----------------------------------------------------------------------------------------


def render_overlay_controls(analysis: dict[str, Any] | bool | None) -> None:
    """Over the viewer: how strongly the heatmap shows, and whether the tissue mask does."""
    if not isinstance(analysis, dict) or analysis["status"] != "succeeded":
        return
    opacity, mask = st.columns([3, 2])
    opacity.slider(
        "Heatmap opacity",
        min_value=0.0,
        max_value=1.0,
        value=0.5,
        step=0.05,
        key=f"heatmap-opacity-{analysis['id']}",
    )
    mask.toggle("Show the tissue mask", key=f"tissue-mask-{analysis['id']}")


def render_analysis(
    client: GatewayClient, slide: dict[str, Any], analysis: dict[str, Any] | bool | None
) -> None:
    if analysis is False:
        return  # a gateway without slide analyses
    assert analysis is not True
    st.subheader("Analysis")
    session = client.session
    can_write = session is not None and session.role in WRITERS
    if flash := st.session_state.pop(FLASH_KEY, None):
        st.success(flash)
    if analysis is None:
        st.caption("This slide has not been analysed yet.")
    elif analysis["status"] in ACTIVE:
        render_progress(client, analysis["id"], can_write)
    elif analysis["status"] == "failed":
        error = analysis.get("error") or {}
        reason = error.get("message") or "no reason was recorded"
        st.error(f"The analysis failed: {plain(reason)}")
        if error.get("code"):
            st.caption(f"Reason code: {error['code']}")
    elif analysis["status"] == "cancelled":
        st.info("The last analysis was cancelled.")
    if can_write and (analysis is None or analysis["status"] not in ACTIVE):
        render_start(client, slide)
    if analysis is not None and analysis["status"] == "succeeded":
        render_results(client, slide, analysis, can_write)


def render_start(client: GatewayClient, slide: dict[str, Any]) -> None:
    unknown = slide.get("microns_per_pixel_x") is None
    if st.button(
        "Analyse this slide",
        key=f"analyse-{slide['id']}",
        disabled=unknown,
        help="Cut the whole slide into tiles at the model's scale and assess every tissue "
        "tile; it runs in the background."
        + (" Needs the slide's resolution, which is unknown." if unknown else ""),
    ):
        try:
            client.start_slide_analysis(slide["id"])
        except GatewayError as exc:
            st.error(f"The analysis was not started: {start_error_message(exc)}")
            if exc.request_id:
                st.caption(f"Reference for support: request {exc.request_id}")
            return
        st.rerun()


def render_progress(client: GatewayClient, analysis_id: str, can_write: bool) -> None:
    @st.fragment(run_every=POLL_S)
    def follow() -> None:
        # The page's client is closed when the page's run ends; the fragment's own reruns
        # come after that, each on a client of its own.
        with closing(client.reopened()) as live:
            try:
                analysis = live.analysis(analysis_id)
            except GatewayError as exc:
                show_error(exc, "follow the analysis")
                return
            if analysis["status"] not in ACTIVE:
                st.rerun()  # the whole page, which shows the result (or the failure)
            st.progress(progress_fraction(analysis), text=progress_text(analysis))
            if can_write and st.button("Cancel the analysis", key=f"cancel-{analysis_id}"):
                try:
                    live.cancel_analysis(analysis_id)
                except GatewayError as exc:
                    show_error(exc, "cancel the analysis")
                    return
                st.rerun()

    follow()


def render_results(
    client: GatewayClient, slide: dict[str, Any], analysis: dict[str, Any], can_write: bool
) -> None:
    analysis_id = analysis["id"]
    summary = analysis.get("summary") or {}
    facts = summary_facts(summary)
    columns = st.columns(4)
    for column, name in zip(
        columns, ["Tiles assessed", "Tumour area", "Regions", "Highest region"], strict=True
    ):
        column.metric(name, facts[name])
    tumour = f"Tumour: {facts['Areas']}. " if facts["Areas"] else ""
    st.caption(
        f"{tumour}{skipped_text(summary)} Model {plain(facts['Model'])}, "
        f"threshold {facts['Threshold']}."
    )
    try:
        regions = client.analysis_regions(analysis_id)
    except GatewayError as exc:
        show_error(exc, "load the regions")
        return
    if regions:
        try:
            geojson = client.analysis_regions_geojson(analysis_id)
        except GatewayError as exc:
            show_error(exc, "prepare the GeoJSON")
        else:
            st.download_button(
                "Download the regions (GeoJSON)",
                data=geojson,
                file_name=f"regions-{analysis_id}.geojson",
                mime="application/geo+json",
                help="QuPath imports it as annotations, in the slide's full-resolution pixels.",
            )
    render_regions(client, slide, analysis_id, regions, can_write)
    if can_write:
        render_slide_verdict(client, analysis_id)


def render_regions(
    client: GatewayClient,
    slide: dict[str, Any],
    analysis_id: str,
    regions: list[dict[str, Any]],
    can_write: bool,
) -> None:
    st.markdown("**Suspicious regions**, highest peak probability first")
    if not regions:
        st.info("No region reached the model's threshold.")
        return
    focus = st.session_state.get(FOCUS_KEY) or {}
    chosen = focus.get("region_id") if focus.get("analysis_id") == analysis_id else None
    for region in regions:
        button, about = st.columns([1, 4])
        button.button(
            f"Region {region['rank']}",
            key=f"region-{region['id']}",
            type="primary" if region["id"] == chosen else "secondary",
            on_click=select_region,
            args=(analysis_id, region, slide["width"]),
        )
        about.caption(region_line(region))
    picked = [r for r in regions if r["id"] == chosen]
    if picked:
        render_region(client, analysis_id, picked[0], can_write)


def render_region(
    client: GatewayClient, analysis_id: str, region: dict[str, Any], can_write: bool
) -> None:
    region_id = region["id"]
    with st.container(border=True):
        st.markdown(f"**Region {region['rank']}**: {region_line(region)}")
        tiles = region.get("top_tiles") or []
        if not tiles:
            st.caption("No top tiles were kept for this region.")
        for row_start in range(0, len(tiles), 4):
            columns = st.columns(4)
            for column, tile in zip(columns, tiles[row_start : row_start + 4], strict=False):
                overlay = "gradcam" if tile.get("has_gradcam") else "none"
                with column:
                    try:
                        image = cached_image(
                            f"region-tile:{analysis_id}:{region_id}:{tile['rank']}:{overlay}",
                            partial(
                                client.region_tile, analysis_id, region_id, tile["rank"], overlay
                            ),
                        )
                    except GatewayError as exc:
                        show_error(exc, "load the tile")
                        continue
                    kind = "with Grad-CAM" if overlay == "gradcam" else "no Grad-CAM"
                    st.image(
                        image,
                        caption=f"Tile {tile['rank']} · p = {tile['probability']:.2f} · {kind}",
                        width="stretch",
                    )
        review = region.get("review")
        if review:
            verdict = REGION_VERDICTS.get(review["verdict"], review["verdict"])
            label = f" ({review['corrected_label']})" if review.get("corrected_label") else ""
            comment = f": {plain(review['comment'])}" if review.get("comment") else ""
            st.caption(f"Last review: {verdict}{label}{comment}")
        if can_write:
            render_region_review(client, analysis_id, region)


def render_region_review(client: GatewayClient, analysis_id: str, region: dict[str, Any]) -> None:
    region_id = region["id"]
    verdict = st.radio(
        "Your reading of this region",
        list(REGION_VERDICTS),
        format_func=REGION_VERDICTS.get,
        horizontal=True,
        key=f"region-verdict-{region_id}",
    )
    corrected = None
    if verdict == "correct":
        corrected = st.selectbox(
            "Correct label", ["benign", "malignant"], key=f"region-label-{region_id}"
        )
    comment = st.text_area(
        "Comment on the region (optional)", max_chars=4000, key=f"region-comment-{region_id}"
    )
    if not st.button("Record the region review", key=f"region-review-{region_id}"):
        return
    try:
        client.review_region(
            analysis_id, region_id, verdict, corrected_label=corrected, comment=comment.strip()
        )
    except GatewayError as exc:
        show_error(exc, "record the region review")
        return
    st.session_state[FLASH_KEY] = f"Review of region {region['rank']} recorded."
    st.rerun()


def render_slide_verdict(client: GatewayClient, analysis_id: str) -> None:
    st.markdown("**Your verdict on the slide**")
    verdict = st.radio(
        "Slide verdict",
        list(SLIDE_VERDICTS),
        format_func=str.capitalize,
        horizontal=True,
        key=f"slide-verdict-{analysis_id}",
    )
    comment = st.text_area(
        "Comment on the slide (optional)", max_chars=4000, key=f"slide-comment-{analysis_id}"
    )
    if not st.button("Record the slide verdict", key=f"slide-review-{analysis_id}"):
        return
    try:
        client.review_analysis(analysis_id, verdict, comment=comment.strip())
    except GatewayError as exc:
        show_error(exc, "record the slide verdict")
        return
    st.session_state[FLASH_KEY] = f"Slide verdict recorded: {verdict}."
    st.rerun()
