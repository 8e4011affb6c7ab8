"""Signing in and out. The token pair lives in the user's Streamlit session only (server
side, never in the browser); the gateway client refreshes it silently."""

import streamlit as st

from frontend.components.about import WHAT_IT_IS
from frontend.components.slides import forget_upload_ticket
from frontend.components.system_status import render_system_status
from frontend.components.widgets import EXPIRED_KEY, plain, show_error
from frontend.utils.gateway_client import SESSION_KEY, GatewayClient, GatewayError

ROLE_NAMES = {"admin": "Administrator", "clinician": "Clinician", "viewer": "Viewer"}


def render_login(client: GatewayClient) -> None:
    st.header("Sign in")
    if st.session_state.pop(EXPIRED_KEY, False):
        st.warning("Your session has expired. Please sign in again.")
    with st.form("login"):
        email = st.text_input("Email", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        _sign_in(client, email, password)
    with st.expander("About this system"):
        st.markdown(WHAT_IT_IS)
    render_system_status(client)


def _sign_in(client: GatewayClient, email: str, password: str) -> None:
    if not email.strip() or not password:
        st.error("Enter your email and password.")
        return
    try:
        client.login(email.strip(), password)
    except GatewayError as exc:
        if exc.code == "invalid_credentials":
            st.error("Wrong email or password.")
        else:
            show_error(exc, "sign in")
        return
    # Nothing of an earlier session in this browser (results, images, exports) carries over.
    forget_upload_ticket()
    for key in list(st.session_state):
        if key != SESSION_KEY:
            del st.session_state[key]
    st.rerun()


def render_account(client: GatewayClient) -> None:
    """The sidebar's account box: who is signed in, and the way out."""
    session = client.session
    if session is None:
        return
    with st.sidebar:
        name = str(session.user.get("full_name") or session.user.get("email") or "")
        st.markdown(f"**{plain(name)}**")
        email = plain(str(session.user.get("email", "")))
        st.caption(f"{ROLE_NAMES.get(session.role, session.role)} · {email}")
        if st.button("Sign out"):
            client.logout()
            forget_upload_ticket()  # it holds the bearer, and the relay would still honour it
            st.session_state.clear()
            st.rerun()
