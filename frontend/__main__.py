"""`python -m frontend`: serve the Streamlit app on its configured host and port."""

import os
import sys
from pathlib import Path

from frontend.config.settings import get_settings
from frontend.config.theme import theme_options

settings = get_settings()
app_path = Path(__file__).with_name("app.py")
# exec: Streamlit becomes this process, so a supervisor's signals reach it directly.
os.execv(
    sys.executable,
    [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path),
        "--server.address",
        settings.host,
        "--server.port",
        str(settings.port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        # A failure shows the page's own message, never a traceback.
        "--client.showErrorDetails",
        "none",
        "--server.maxUploadSize",
        str(settings.max_upload_mb),
        "--client.toolbarMode",
        "minimal",
        *theme_options(),
    ],
)
