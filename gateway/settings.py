from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from common.settings import TokenCheckingSettings


class GatewaySettings(TokenCheckingSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    port: int = 8004
    inference_url: str = "http://127.0.0.1:8001"
    data_url: str = "http://127.0.0.1:8002"
    downstream_connect_timeout_s: float = 2.0
    downstream_read_timeout_s: float = 30.0
    # How long `/ready` waits for each downstream's own `/ready`.
    readiness_timeout_s: float = 3.0

    def downstream_urls(self) -> dict[str, str]:
        return {"auth": self.auth_url, "inference": self.inference_url, "data": self.data_url}


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
