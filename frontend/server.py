"""The frontend's ASGI app: Streamlit serving `app.py`, plus the server's own slide routes
(`frontend/slide_relay.py`) on the same origin. `python -m frontend` runs it."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit import config

from frontend.config.settings import get_settings
from frontend.slide_relay import SlideRelay

settings = get_settings()
relay = SlideRelay(
    settings.gateway_url,
    timeout_s=settings.request_timeout_s,
    upload_timeout_s=settings.slide_upload_timeout_s,
    forwarded_allow_ips=settings.forwarded_allow_ips,
)


@asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    yield None
    await relay.aclose()


# Streamlit serves its own routes under server.baseUrlPath (STREAMLIT_SERVER_BASE_URL_PATH);
# the relays must follow, or the page's component asks for addresses nothing answers.
app = st.App(
    Path(__file__).with_name("app.py"),
    routes=relay.routes(config.get_option("server.baseUrlPath")),
    lifespan=lifespan,
)
