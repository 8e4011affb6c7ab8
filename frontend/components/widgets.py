"""Small pieces every page uses: readable errors, labels, dates, images fetched once."""

import re
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from frontend.utils.gateway_client import GatewayClient, GatewayError, SessionExpired

# Streamlit's named text colours, and the same hues for charts.
LABEL_COLOURS = {"benign": "green", "malignant": "red"}
CHART_COLOURS = {"benign": "#2e7d32", "malignant": "#c62828"}
NEUTRAL_COLOUR = "#78909c"  # what is not a verdict: not assessable, not decided
IMAGE_CACHE_KEY = "image_cache"
# Per browser session; an upload may be up to 20 MB, so the bound is on bytes, not images.
IMAGE_CACHE_BYTES = 48 * 1024 * 1024
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$])")
EXPIRED_KEY = "session_expired"
HEATMAP_CAPTION = (
    "Grad-CAM: the regions that drove the score. It shows where the model looked; it does not "
    "make a verdict."
)


def mark_session_expired() -> None:
    """The sign-in page says why it is shown again."""
    st.session_state[EXPIRED_KEY] = True


def show_error(exc: GatewayError, doing: str | None = None) -> None:
    """A gateway failure as a sentence, with the request id support can look up. An expired
    session is not a page's error: back to the sign-in page, which says so."""
    if isinstance(exc, SessionExpired):
        mark_session_expired()
        st.rerun()
    lead = f"Could not {doing}: " if doing else ""
    st.error(f"{lead}{exc.message}")
    if exc.request_id:
        st.caption(f"Reference for support: request {exc.request_id}")


def label_markdown(label: str | None) -> str:
    if label is None:
        return ":gray[**NO VERDICT**]"
    return f":{LABEL_COLOURS.get(label, 'gray')}[**{label.upper()}**]"


def when(timestamp: str | None) -> str:
    """An API timestamp as `2026-11-24 19:30 UTC`."""
    if not timestamp:
        return "—"
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def plain(text: str) -> str:
    """Text people typed (a comment, a name), shown as itself inside Markdown: no links,
    images or formatting of its own."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def remember_image(key: str, content: bytes) -> None:
    cache: OrderedDict[str, bytes] = st.session_state.setdefault(IMAGE_CACHE_KEY, OrderedDict())
    cache[key] = content
    cache.move_to_end(key)
    while len(cache) > 1 and sum(len(v) for v in cache.values()) > IMAGE_CACHE_BYTES:
        cache.popitem(last=False)


def cached_image(key: str, fetch: Callable[[], bytes]) -> bytes:
    """Image bytes fetched once per session: Streamlit reruns the page on every click, and
    stored images never change. The least recently shown are dropped first."""
    cache: OrderedDict[str, bytes] = st.session_state.setdefault(IMAGE_CACHE_KEY, OrderedDict())
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    content = fetch()
    remember_image(key, content)
    return content


def show_prediction_images(
    client: GatewayClient,
    prediction: dict[str, Any],
    image_column: DeltaGenerator,
    heatmap_column: DeltaGenerator,
) -> None:
    """The original in one column, its Grad-CAM overlay in the other; a missing image is a
    message in its column, not the page's failure."""
    prediction_id = prediction["id"]
    with image_column:
        try:
            content = cached_image(
                f"image:{prediction_id}", lambda: client.prediction_image(prediction_id)
            )
            st.image(content, caption="Original", width="stretch")
        except GatewayError as exc:
            show_error(exc, "load the original image")
    with heatmap_column:
        if prediction.get("heatmap_ref"):
            try:
                overlay = cached_image(
                    f"heatmap:{prediction_id}", lambda: client.heatmap(prediction_id)
                )
                st.image(overlay, caption=HEATMAP_CAPTION, width="stretch")
            except GatewayError as exc:
                show_error(exc, "load the heatmap")
        else:
            st.info("No heatmap was stored for this prediction.")


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f} %"
