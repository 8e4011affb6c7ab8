"""Slides: upload whole scanned slides for a patient, list them with thumbnails, and view one
in the browser (OpenSeadragon) with a scale bar and its metadata; analyse it and read the
analysis over it (`frontend/components/slide_analysis.py`).

The browser never holds the user's bearer token: the upload goes to the app's own
`/slide-upload` under a one-time ticket this page issues, and the viewer's tiles come through
the app's own `/slide-tiles` with a view grant for that one slide (`frontend/slide_relay.py`).
"""

import math
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.components.v1 import declare_component

from frontend.components.slide_analysis import (
    latest_analysis,
    render_analysis,
    render_overlay_controls,
    viewer_arguments,
)
from frontend.components.upload import patient_for_reference, patient_with_reference
from frontend.components.widgets import cached_image, plain, show_error, when
from frontend.config.settings import get_settings
from frontend.slide_relay import TICKETS
from frontend.utils.gateway_client import GatewayClient, GatewayError

STATIC = Path(__file__).with_name("slide_viewer") / "static"
PAGE_SIZE = 10
VIEWER_HEIGHT = 600
# Spent or replaced on the next render, so a session holds one live ticket at a time.
TICKET_KEY = "slide_upload_ticket"
TARGET_KEY = "slide_upload_target"
HANDLED_KEY = "slide_upload_handled"
OPEN_KEY = "slide_open"
# Changed by every View, so the viewer opens the slide afresh even when it is the same one.
OPEN_NONCE_KEY = "slide_open_nonce"
GRANTS_KEY = "slide_view_grants"
PAGE_KEY = "slide_list_page"
FILTER_KEY = "slide_list_patient"
UPLOAD_KEY = "slide_upload"
UPLOAD_ERROR_KEY = "slide_upload_error"
ACCEPT = ".svs,.tif,.tiff,.ndpi,.scn,.mrxs,.bif,.vms,.vmu,.svslide,.dcm,.zip"
FORMATS_HELP = (
    "Aperio SVS, generic tiled TIFF, Hamamatsu NDPI, Leica SCN, Philips TIFF, Ventana BIF; "
    "MIRAX (.mrxs with its folder) and DICOM WSI series as one zip."
)
# What to do about each refusal, beside the gateway's own sentence.
UPLOAD_ADVICE = {
    "not_a_slide": (
        "This is a plain image, not a whole scanned slide. To analyse a single image, use the "
        "Analyse page."
    ),
    "unsupported_slide_format": f"This slide format cannot be read. Supported: {FORMATS_HELP}",
    "unsupported_media_type": f"This kind of file cannot be uploaded. Supported: {FORMATS_HELP}",
    "corrupt_slide": (
        "The file looks like a slide but cannot be read: it may be damaged or only partly "
        "copied. Export it from the scanner software again."
    ),
    "payload_too_large": "The file is larger than the system accepts.",
    "upload_incomplete": "The upload stopped before the whole file arrived; please try again.",
    "empty_upload": "The file is empty.",
    "unsafe_archive": (
        "The zip was refused: it holds paths outside its folder, links, or too many or too "
        "large files."
    ),
    "invalid_filename": "The file name cannot be used; rename the file (no folders in its name).",
    "invalid_upload_ticket": "The upload form had expired; choose the file and upload again.",
    "patient_not_found": "That patient is no longer registered; enter the reference again.",
}
# Refusals whose own message adds what people need (the limit, what is wrong in the file).
WITH_DETAIL = frozenset({"payload_too_large", "corrupt_slide", "unsafe_archive"})
RESOLUTION_SOURCES = {
    "file": "from the file",
    "uploader": "entered at upload",
    "unknown": "unknown",
}


def _component(**args: Any) -> Any:
    component = declare_component("slide_viewer", path=str(STATIC))
    return component(**args)


# -- upload ------------------------------------------------------------------------------------


def upload_error_message(status: int, body: Any) -> tuple[str, str | None]:
    """What to tell people about a refused upload, and the request id support can look up."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        if status == 0:
            return "The connection failed before the system answered; please try again.", None
        return f"The system answered {status} without saying why.", None
    code, message = str(error.get("code") or ""), str(error.get("message") or "")
    advice = UPLOAD_ADVICE.get(code)
    if advice and message and code in WITH_DETAIL:
        text = f"{advice} ({message})"
    else:
        text = advice or message
    return text, error.get("request_id")


def issue_ticket(client: GatewayClient, patient_id: str, microns_per_pixel: float | None) -> str:
    """A new one-time upload ticket carrying the user's token, replacing the session's last."""
    session = client.fresh_session()
    TICKETS.revoke(st.session_state.get(TICKET_KEY))
    ticket = TICKETS.issue(
        session.access_token, patient_id, microns_per_pixel, not_after=session.access_expires_at
    )
    st.session_state[TICKET_KEY] = ticket
    return ticket


def forget_upload_ticket() -> None:
    """The session's live ticket (it holds the user's token) dies with the session."""
    TICKETS.revoke(st.session_state.pop(TICKET_KEY, None))


def handle_upload_result(result: Any) -> None:
    """The browser's report of one upload, acted on once however often the page reruns."""
    if not isinstance(result, dict) or result.get("nonce") == st.session_state.get(HANDLED_KEY):
        return
    st.session_state[HANDLED_KEY] = result.get("nonce")
    status, body = int(result.get("status") or 0), result.get("body")
    if status == 201 and isinstance(body, dict) and "id" in body:
        open_slide(body["id"])
        st.session_state[PAGE_KEY] = 0
        st.session_state.pop(UPLOAD_ERROR_KEY, None)
        st.toast(f"Stored {plain(str(body.get('filename') or 'the slide'))}.")
        return
    message, request_id = upload_error_message(status, body)
    st.session_state[UPLOAD_ERROR_KEY] = (result.get("filename") or "The file", message, request_id)


def render_upload(client: GatewayClient) -> None:
    st.subheader("Upload a slide")
    with st.form("slide_upload_details", border=False):
        reference = st.text_input(
            "Patient reference",
            max_chars=64,
            help="The hospital's pseudonymised reference, never a name. New references are "
            "registered.",
        ).strip()
        mpp = st.number_input(
            "Microns per pixel (optional)",
            min_value=0.0,
            max_value=100.0,
            value=0.0,
            step=0.001,
            format="%.4f",
            help="Only for files that do not record their resolution; leave 0 to take it from "
            "the file. Without either, the slide is stored as 'resolution unknown' and has no "
            "scale bar.",
        )
        chosen = st.form_submit_button("Choose the file")
    if chosen:
        if not reference:
            st.warning("Enter the patient reference first.")
        else:
            try:
                patient = patient_for_reference(client, reference)
            except GatewayError as exc:
                show_error(exc, f"register patient {reference!r}")
                return
            st.session_state[TARGET_KEY] = (patient, mpp or None)
    target = st.session_state.get(TARGET_KEY)
    if target is None:
        st.caption(f"Formats: {FORMATS_HELP}")
        return
    patient, microns_per_pixel = target
    resolution = f"{microns_per_pixel:g} µm/px" if microns_per_pixel else "resolution from the file"
    st.markdown(f"For patient **{plain(patient['external_ref'])}**, {resolution}.")
    ticket = issue_ticket(client, patient["id"], microns_per_pixel)
    result = _component(
        mode="upload",
        ticket=ticket,
        max_bytes=get_settings().max_slide_bytes,
        accept=ACCEPT,
        key=UPLOAD_KEY,
    )
    handle_upload_result(result)
    if failed := st.session_state.get(UPLOAD_ERROR_KEY):
        name, message, request_id = failed
        st.error(f"{plain(name)} was not stored: {message}")
        if request_id:
            st.caption(f"Reference for support: request {request_id}")


# -- list --------------------------------------------------------------------------------------


def dimensions(slide: dict[str, Any]) -> str:
    return f"{slide['width']:,} x {slide['height']:,} px"


def resolution(slide: dict[str, Any]) -> str:
    x, y = slide.get("microns_per_pixel_x"), slide.get("microns_per_pixel_y")
    source = RESOLUTION_SOURCES.get(slide.get("resolution_source") or "unknown", "unknown")
    if x is None:
        return "unknown (no scale bar)"
    value = f"{x:.3f} µm/px" if y is None or math.isclose(x, y) else f"{x:.3f} x {y:.3f} µm/px"
    return f"{value} ({source})"


def objective(slide: dict[str, Any]) -> str:
    power = slide.get("objective_power")
    return "unknown" if power is None else f"{power:g}x"


def patient_filter(client: GatewayClient) -> tuple[str | None, bool]:
    """The patient id the list is filtered by (None: every patient), and whether a typed
    reference matched nobody."""
    reference = st.text_input("Filter by patient reference", max_chars=64).strip()
    if not reference:
        return None, False
    match = patient_with_reference(client, reference)
    return (match["id"], False) if match else (None, True)


def render_slide_row(client: GatewayClient, slide: dict[str, Any]) -> None:
    slide_id = slide["id"]
    with st.container(border=True):
        thumb, about, action = st.columns([1, 3, 1])
        with thumb:
            try:
                image = cached_image(
                    f"slide-thumbnail:{slide_id}", lambda: client.slide_thumbnail(slide_id)
                )
                st.image(image, width=120)
            except GatewayError as exc:
                show_error(exc, "load the thumbnail")
        with about:
            st.markdown(f"**{plain(slide['filename'])}**")
            st.caption(
                f"{slide['format']} · {dimensions(slide)} · {objective(slide)} · "
                f"{resolution(slide)} · uploaded {when(slide['created_at'])}"
            )
        with action:
            if st.button("View", key=f"view-{slide_id}"):
                open_slide(slide_id)


def open_slide(slide_id: str) -> None:
    st.session_state[OPEN_KEY] = slide_id
    st.session_state[OPEN_NONCE_KEY] = uuid.uuid4().hex


def render_list(client: GatewayClient) -> None:
    st.subheader("Stored slides")
    patient_id, unknown = patient_filter(client)
    if unknown:
        st.info("No patient has that reference.")
        return
    if st.session_state.get(FILTER_KEY) != patient_id:  # another patient starts at page 1
        st.session_state[FILTER_KEY] = patient_id
        st.session_state[PAGE_KEY] = 0
    page = st.session_state.get(PAGE_KEY, 0)
    listing = client.slides(patient_id=patient_id, limit=PAGE_SIZE, offset=page * PAGE_SIZE)
    total, items = listing["total"], listing["items"]
    if not items:
        st.info("No slides yet." if total == 0 else "No slides on this page.")
    for slide in items:
        render_slide_row(client, slide)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if pages > 1:
        back, where, forward = st.columns([1, 2, 1])
        if back.button("Previous", disabled=page == 0):
            st.session_state[PAGE_KEY] = page - 1
            st.rerun()
        where.caption(f"Page {page + 1} of {pages} ({total} slides)")
        if forward.button("Next", disabled=page + 1 >= pages):
            st.session_state[PAGE_KEY] = page + 1
            st.rerun()


# -- viewer ------------------------------------------------------------------------------------


def view_grant(client: GatewayClient, slide_id: str) -> tuple[str, float]:
    """A grant for this slide and the seconds until the viewer should ask for the next: one
    is reused while more than half its life is left (the browser caches tiles by address,
    grant included), and the viewer asks in time (a rerun) so tiles never meet an expired one."""
    grants: dict[str, tuple[str, float, float]] = st.session_state.setdefault(GRANTS_KEY, {})
    now = time.time()
    if slide_id in grants:
        grant, issued, expires = grants[slide_id]
        if now < (issued + expires) / 2:
            return grant, (issued + expires) / 2 - now
    link = client.slide_view_link(slide_id)
    expires_at = _timestamp(link["expires_at"], default=now + 60)
    grants[slide_id] = (link["grant"], now, expires_at)
    return link["grant"], max(expires_at - now, 0) / 2


def _timestamp(text: str, default: float) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return default


def render_viewer(client: GatewayClient, slide_id: str) -> None:
    slide = client.slide(slide_id)
    st.subheader(f"Viewer: {plain(slide['filename'])}")
    picture, facts = st.columns([3, 1])
    with facts:
        st.markdown("**Slide**")
        rows = {
            "Vendor": slide["format"],
            "Dimensions": dimensions(slide),
            "Levels": str(slide["level_count"]),
            "Objective": objective(slide),
            "Resolution": resolution(slide),
            "Uploaded": when(slide["created_at"]),
        }
        st.markdown("\n".join(f"- {name}: **{plain(value)}**" for name, value in rows.items()))
        if slide.get("levels"):
            pyramid = (
                f"{level['width']:,}x{level['height']:,} (1/{level['downsample']:g})"
                for level in slide["levels"]
            )
            st.caption("Levels: " + ", ".join(pyramid))
        if slide.get("microns_per_pixel_x") is None:
            st.warning(
                "Resolution unknown: this slide has no scale bar, and analyses that need a "
                "physical scale will not run on it."
            )
    analysis = latest_analysis(client, slide_id)
    with picture:
        render_overlay_controls(analysis)
        grant, renew_in_s = view_grant(client, slide_id)
        _component(
            mode="viewer",
            slide_id=slide_id,
            open_nonce=st.session_state.get(OPEN_NONCE_KEY),
            grant=grant,
            renew_in_s=round(renew_in_s, 1),
            mpp=slide.get("microns_per_pixel_x"),
            height=VIEWER_HEIGHT,
            key="slide_viewer",
            **viewer_arguments(analysis),
        )
    render_analysis(client, slide, analysis)


def render_slides(client: GatewayClient) -> None:
    st.header("Slides")
    st.caption(
        "Whole scanned slides: upload them for a patient, then pan and zoom across the whole "
        "slide in the browser, and analyse it tile by tile."
    )
    session = client.session
    if session is not None and session.role in ("admin", "clinician"):
        render_upload(client)
    render_list(client)
    opened = st.session_state.get(OPEN_KEY)
    if opened:
        try:
            render_viewer(client, opened)
        except GatewayError as exc:
            if exc.status_code == 404:
                st.session_state.pop(OPEN_KEY, None)
            show_error(exc, "open the slide")
