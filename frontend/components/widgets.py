"""Small pieces every page uses: readable errors, labels, dates, images fetched once."""

import re
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

import streamlit as st

from frontend.utils.gateway_client import GatewayError, SessionExpired

# Streamlit's named text colours, and the same hues for charts.
LABEL_COLOURS = {"benign": "green", "malignant": "red"}
CHART_COLOURS = {"benign": "#2e7d32", "malignant": "#c62828"}
IMAGE_CACHE_KEY = "image_cache"
# Per browser session; an upload may be up to 20 MB, so the bound is on bytes, not images.
IMAGE_CACHE_BYTES = 48 * 1024 * 1024
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$])")
EXPIRED_KEY = "session_expired"


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


def label_markdown(label: str) -> str:
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


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f} %"
