"""The whole app (`frontend/app.py`) under Streamlit's AppTest: signing in and out, pages by
role, silent refresh, an expired session, and failures shown as sentences."""

import pytest
from streamlit.testing.v1 import AppTest

from devstack import ROOT
from devstack.postgres import free_port
from frontend.components.assistant import CHOICE_KEY, CONVERSATIONS_KEY, Conversation, Turn
from frontend.config.settings import get_settings
from frontend.utils import gateway_client
from tests.support.images import png_bytes
from tests.unit.frontend import fake_gateway
from tests.unit.frontend.fake_gateway import PASSWORD, FakeGateway

APP = str(ROOT / "frontend" / "app.py")


@pytest.fixture
def fake(monkeypatch):
    gateway = FakeGateway()
    monkeypatch.setattr(
        gateway_client,
        "client_for_session",
        lambda base_url, timeout_s, store, client_address=None: gateway.client(store),
    )
    yield gateway
    assert gateway.drift == []  # a page shows a failure; the fake's drift must fail the test


def start() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=30)
    app.run()
    assert not app.exception, app.exception
    return app


def sign_in(app: AppTest, email: str, password: str = PASSWORD) -> AppTest:
    app.text_input[0].input(email)
    app.text_input[1].input(password)
    next(b for b in app.button if b.label == "Sign in").click().run()
    assert not app.exception, app.exception
    return app


def headers(app: AppTest) -> list[str]:
    return [h.value for h in app.header]


def test_signed_out_the_app_asks_to_sign_in(fake):
    app = start()
    assert headers(app) == ["Sign in"]
    assert not fake.calls("GET", "/api/v1/predictions")


def test_a_wrong_password_says_so_and_signs_nobody_in(fake):
    app = sign_in(start(), "clinician@example.com", "not the password")
    assert app.error[0].value == "Wrong email or password."
    assert headers(app) == ["Sign in"]
    assert "gateway_session" not in app.session_state


def test_empty_fields_are_refused_before_any_call(fake):
    app = sign_in(start(), "", "")
    assert app.error[0].value == "Enter your email and password."
    assert not fake.calls("POST", "/api/v1/auth/token")


@pytest.mark.parametrize(
    ("role", "first_page"),
    [
        ("clinician", "Analyse images"),
        ("viewer", "Patients and history"),
        ("admin", "Analyse images"),
    ],
)
def test_each_role_lands_on_its_first_page(fake, role, first_page):
    app = sign_in(start(), f"{role}@example.com")
    assert headers(app) == [first_page]
    assert f"{role}@example\\.com" in app.sidebar.caption[-1].value  # escaped Markdown


def test_the_token_pair_is_refreshed_silently_before_it_expires(fake):
    fake.access_lifetime_s = 10  # inside the client's refresh margin
    app = sign_in(start(), "viewer@example.com")  # lands on a page that calls the gateway
    app.run()
    app.run()
    assert len(fake.calls("POST", "/api/v1/auth/refresh")) >= 2
    assert headers(app) == ["Patients and history"]
    assert not app.warning


def test_a_revoked_session_returns_to_sign_in_with_a_message(fake):
    app = sign_in(start(), "viewer@example.com")  # lands on a page that calls the gateway
    fake.expire_session()
    app.run()
    assert headers(app) == ["Sign in"]
    assert app.warning[0].value == "Your session has expired. Please sign in again."
    sign_in(app, "viewer@example.com")
    assert headers(app) == ["Patients and history"]


def test_a_session_past_its_refresh_lifetime_ends_without_a_call(fake):
    app = sign_in(start(), "clinician@example.com")
    app.session_state["gateway_session"].refresh_expires_at = 0
    calls = len(fake.requests)
    app.run()
    assert headers(app) == ["Sign in"]
    assert app.warning[0].value == "Your session has expired. Please sign in again."
    assert [r.url.path for r in fake.requests[calls:]] == ["/ready"]  # the sign-in page's status


def test_signing_out_ends_the_session_at_the_gateway(fake):
    app = sign_in(start(), "clinician@example.com")
    refresh_token = app.session_state["gateway_session"].refresh_token
    app.sidebar.button[0].click().run()
    assert headers(app) == ["Sign in"]
    assert refresh_token not in fake.refresh_tokens
    assert fake.calls("POST", "/api/v1/auth/logout")


def test_an_unreachable_gateway_is_a_sentence_not_a_traceback(monkeypatch):
    monkeypatch.setenv("FRONTEND_GATEWAY_URL", f"http://127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    try:
        app = sign_in(start(), "clinician@example.com")
    finally:
        get_settings.cache_clear()
    assert app.error[0].value == (
        "Could not sign in: The system cannot be reached right now; please try again in a moment."
    )


def test_a_session_that_expires_while_analysing_returns_to_sign_in_and_leaves_nothing(fake):
    app = sign_in(start(), "clinician@example.com")
    app.file_uploader[0].set_value([("a.png", png_bytes(1, 48), "image/png")])
    app.run()
    fake.expire_session()
    next(b for b in app.button if b.label == "Analyse").click().run()
    assert not app.exception
    assert headers(app) == ["Sign in"]
    assert app.warning[0].value == "Your session has expired. Please sign in again."
    assert fake.predictions == []
    sign_in(app, "clinician@example.com")
    assert headers(app) == ["Analyse images"]
    assert not app.subheader or app.subheader[0].value != "Results (0 of 1 analysed)"
    assert "analyse_results" not in app.session_state


def test_signing_in_drops_what_an_earlier_session_left(fake):
    app = sign_in(start(), "clinician@example.com")
    app.file_uploader[0].set_value([("a.png", png_bytes(1, 48), "image/png")])
    app.run()
    next(b for b in app.button if b.label == "Analyse").click().run()
    assert app.subheader[0].value == "Results (1 of 1 analysed)"
    app.session_state["gateway_session"].refresh_expires_at = 0
    app.run()
    sign_in(app, "viewer@example.com")
    assert "analyse_results" not in app.session_state
    assert "image_cache" not in app.session_state


def test_signing_in_drops_an_earlier_users_conversations_with_the_assistant(fake):
    app = sign_in(start(), "clinician@example.com")
    app.session_state[CONVERSATIONS_KEY] = {"p": Conversation([Turn("user", "A private question")])}
    app.session_state[CHOICE_KEY] = "p"
    app.session_state["gateway_session"].refresh_expires_at = 0
    app.run()
    assert CONVERSATIONS_KEY in app.session_state  # kept until someone signs in
    sign_in(app, "admin@example.com")
    assert CONVERSATIONS_KEY not in app.session_state
    assert CHOICE_KEY not in app.session_state


def failing_page() -> None:
    from frontend.navigation import guarded

    def render(client):
        raise KeyError("a field the page did not expect")

    guarded(render, client=None)()


def test_a_page_that_fails_shows_a_message_and_no_traceback(fake, monkeypatch):
    monkeypatch.setattr(fake_gateway, "CURRENT", fake)
    app = AppTest.from_function(failing_page, default_timeout=30)
    app.run()
    assert not app.exception
    assert app.error[0].value.startswith("This page hit an unexpected problem")
