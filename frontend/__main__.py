"""`python -m frontend`: serve the Streamlit app, with the slide relays, on its configured host
and port."""

from frontend.config.settings import get_settings
from frontend.config.theme import THEME
from frontend.server import app

settings = get_settings()
# The server runs in this process, so a supervisor's signals reach it directly.
app.run(
    config={
        "server.address": settings.host,
        "server.port": settings.port,
        "server.headless": True,
        "browser.gatherUsageStats": False,
        # A failure shows the page's own message, never a traceback.
        "client.showErrorDetails": "none",
        "server.maxUploadSize": settings.max_upload_mb,
        "client.toolbarMode": "minimal",
        **{f"theme.{name}": value for name, value in THEME.items()},
    }
)
