from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class FrontendSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FRONTEND_")

    port: int = 8501
    # Where the Streamlit server reaches the gateway. The browser never calls it directly, so
    # the app works unchanged behind an ngrok tunnel.
    gateway_url: str = "http://127.0.0.1:8004"
    request_timeout_s: float = 30.0
    # The browser refuses bigger files before sending them; keep it at the gateway's upload
    # limit (GATEWAY_MAX_UPLOAD_BYTES, 20 MB).
    max_upload_mb: int = Field(default=20, ge=1, le=200)
    # A slide upload waits this long for each read of the gateway's answer (it checks the
    # whole file before answering): longer than the gateway's GATEWAY_SLIDE_UPLOAD_TIMEOUT_S
    # (600), so that the gateway's own answer, even a 504, is what the browser sees.
    slide_upload_timeout_s: float = Field(default=660.0, gt=0)
    # The browser refuses a larger slide before sending it; keep it equal to the gateway's
    # GATEWAY_MAX_SLIDE_BYTES (4 GiB), which is what actually decides.
    max_slide_bytes: int = Field(default=4 * 1024**3, ge=1)


@lru_cache
def get_settings() -> FrontendSettings:
    return FrontendSettings()
