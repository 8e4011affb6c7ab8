"""The pages, who may see each, and the guard that turns a page's failure into a message."""

import logging
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from frontend.components.about import render_about
from frontend.components.admin import render_admin
from frontend.components.assistant import render_assistant
from frontend.components.auth import render_login
from frontend.components.data import render_data
from frontend.components.history import render_history
from frontend.components.models import render_models
from frontend.components.review import render_review_queue
from frontend.components.slides import render_slides
from frontend.components.stats import render_dashboard
from frontend.components.upload import render_analyse
from frontend.components.widgets import mark_session_expired, show_error
from frontend.utils.gateway_client import GatewayClient, GatewayError, SessionExpired

logger = logging.getLogger("frontend")
EVERYONE = frozenset({"admin", "clinician", "viewer"})
CLINICAL = frozenset({"admin", "clinician"})


@dataclass(frozen=True)
class PageEntry:
    render: Callable[[GatewayClient], None]
    title: str
    icon: str
    url_path: str
    roles: frozenset[str]  # who sees it in the navigation


# In the navigation's order; a signed-in user's first visible page is their start page.
PAGES: list[PageEntry] = [
    PageEntry(render_analyse, "Analyse", ":material/biotech:", "analyse", CLINICAL),
    PageEntry(render_history, "Patients & history", ":material/history:", "history", EVERYONE),
    PageEntry(render_review_queue, "Review queue", ":material/rate_review:", "review", CLINICAL),
    PageEntry(render_assistant, "Assistant", ":material/smart_toy:", "assistant", CLINICAL),
    # Everyone views slides; only clinicians and admins see the upload form on it.
    PageEntry(render_slides, "Slides", ":material/slideshow:", "slides", EVERYONE),
    PageEntry(render_dashboard, "Dashboard", ":material/monitoring:", "dashboard", EVERYONE),
    PageEntry(render_models, "Models", ":material/model_training:", "models", EVERYONE),
    PageEntry(render_data, "Data", ":material/dataset:", "data", EVERYONE),
    PageEntry(render_admin, "Users", ":material/group:", "users", frozenset({"admin"})),
    PageEntry(render_about, "About", ":material/info:", "about", EVERYONE),
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
                st.Page(sign_in, title=entry.title, url_path=entry.url_path, visibility="hidden")
                for entry in PAGES
            ),
        ]
    visible = [entry for entry in PAGES if session.role in entry.roles]
    return [
        st.Page(
            guarded(entry.render, client),
            title=entry.title,
            icon=entry.icon,
            url_path=entry.url_path,
            default=i == 0,
        )
        for i, entry in enumerate(visible)
    ]
