"""The Streamlit shell, run by Streamlit's AppTest."""

from streamlit.testing.v1 import AppTest

from devstack import ROOT
from devstack.postgres import free_port
from frontend.config.settings import get_settings

APP = str(ROOT / "frontend" / "app.py")


def run_app_against(gateway_url: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("FRONTEND_GATEWAY_URL", gateway_url)
    get_settings.cache_clear()
    app = AppTest.from_file(APP, default_timeout=30)
    app.run()
    get_settings.cache_clear()
    return app


def test_shell_says_when_the_gateway_is_unreachable(monkeypatch):
    app = run_app_against(f"http://127.0.0.1:{free_port()}", monkeypatch)
    assert not app.exception
    assert len(app.error) == 1
    assert "Gateway unreachable" in app.error[0].value
    assert app.title[0].value == "Breast histopathology assessment"  # the page still renders
    assert "does not diagnose" in app.caption[0].value
