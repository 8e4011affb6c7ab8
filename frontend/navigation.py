"""The pages, who may see each, and the guard that turns a page's failure into a message."""

import logging
from collections.abc import Callable

import streamlit as st

from frontend.components.about import render_about
from frontend.components.admin import render_admin
from frontend.components.assistant import render_assistant
from frontend.components.auth import render_login
from frontend.components.data import render_data
from frontend.components.history import render_history
from frontend.components.models import render_models
from frontend.components.review import render_review_queue
from frontend.components.stats import render_dashboard
from frontend.components.upload import render_analyse
from frontend.components.widgets import mark_session_expired, show_error
from frontend.utils.gateway_client import GatewayClient, GatewayError, SessionExpired

logger = logging.getLogger("frontend")
EVERYONE = {"admin", "clinician", "viewer"}
CLINICAL = {"admin", "clinician"}
# (render, title, icon, url path, roles that see it)
PAGES: list[tuple[Callable[[GatewayClient], None], str, str, str, set[str]]] = [
    (render_analyse, "Analyse", ":material/biotech:", "analyse", CLINICAL),
    (render_history, "Patients & history", ":material/history:", "history", EVERYONE),
    (render_review_queue, "Review queue", ":material/rate_review:", "review", CLINICAL),
    (render_assistant, "Assistant", ":material/smart_toy:", "assistant", CLINICAL),
    (render_dashboard, "Dashboard", ":material/monitoring:", "dashboard", EVERYONE),
    (render_models, "Models", ":material/model_training:", "models", EVERYONE),
    (render_data, "Data", ":material/dataset:", "data", EVERYONE),
    (render_admin, "Users", ":material/group:", "users", {"admin"}),
    (render_about, "About", ":material/info:", "about", EVERYONE),
]


def guarded(render: Callable[[GatewayClient], None], client: GatewayClient) -> Callable[[], None]:
    def page() -> None:
        try:
            render(client)
        except SessionExpired:
            mark_session_expired()
            st.rerun()
        except GatewayError as exc:
            show_error(exc)
        except Exception:
            logger.exception("page %s failed", render.__name__)
            st.error(
                "This page hit an unexpected problem and could not be shown. The other pages "
                "still work; if it happens again, tell your administrator the time it happened."
            )

    return page


def pages_for(client: GatewayClient) -> list:
    session = client.session
    if session is None:
        sign_in = guarded(render_login, client)
        # Every page's address shows the sign-in form while signed out, so a bookmark or a
        # page whose session just expired lands there and returns to itself after sign-in.
        return [
            st.Page(sign_in, title="Sign in", icon=":material/login:", default=True),
            *(
                st.Page(sign_in, title=title, url_path=path, visibility="hidden")
                for _, title, _, path, _ in PAGES
            ),
        ]
    visible = [entry for entry in PAGES if session.role in entry[4]]
    return [
        st.Page(guarded(render, client), title=title, icon=icon, url_path=path, default=i == 0)
        for i, (render, title, icon, path, _) in enumerate(visible)
    ]
