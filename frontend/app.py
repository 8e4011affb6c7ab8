"""Entry point of the clinicians' app: `python -m frontend` (`frontend/server.py`), which serves
it with the server's own slide routes; `streamlit run frontend/app.py` serves it without them.

Streamlit runs this script for every interaction of every browser session. It shows the pages
the signed-in user's role may see and runs the chosen one; a failure on a page becomes a
readable message on that page, never a traceback, and the rest of the app stays usable.
"""

import logging

# Imported before any page runs, never half-way through one: Streamlit starts a rerun in a new
# thread while the run it replaces is still finishing, and plotly takes numpy and pandas from
# sys.modules without waiting for their import, so a half-imported one breaks a chart.
import numpy  # noqa: F401
import pandas  # noqa: F401
import streamlit as st

from common.logging import json_handler
from frontend.components.auth import render_account
from frontend.components.widgets import mark_session_expired
from frontend.config.settings import get_settings
from frontend.config.theme import CSS
from frontend.navigation import pages_for
from frontend.utils.gateway_client import browser_address, client_for_session


@st.cache_resource
def app_logger(level: str) -> logging.Logger:
    """The app's own log lines (a page that failed, with its traceback) as JSON on stdout,
    like every service's; set up once per process, leaving Streamlit's own logging alone."""
    logger = logging.getLogger("frontend")
    logger.addHandler(json_handler("frontend"))
    logger.setLevel(level)
    logger.propagate = False
    return logger


st.set_page_config(page_title="Cancer Detection", page_icon="🔬", layout="wide")
st.markdown(CSS, unsafe_allow_html=True)
settings = get_settings()
app_logger(settings.log_level)
try:
    request_headers = dict(st.context.headers)
except Exception:  # no browser connection (a script run in tests)
    request_headers = {}
client = client_for_session(
    settings.gateway_url,
    settings.request_timeout_s,
    st.session_state,  # type: ignore[arg-type]  # a MutableMapping in all but its stubs
    browser_address(st.context.ip_address, request_headers, settings.forwarded_allow_ips),
)
if client.end_session_if_expired():
    mark_session_expired()
try:
    with st.sidebar:
        st.title("Cancer Detection")
        st.caption("Decision support for breast histopathology. It assists; it does not diagnose.")
    render_account(client)
    st.navigation(pages_for(client)).run()
finally:
    client.close()
