from functools import lru_cache

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from common.settings import TokenCheckingSettings


class GatewaySettings(TokenCheckingSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    port: int = 8004
    inference_url: str = "http://127.0.0.1:8001"
    data_url: str = "http://127.0.0.1:8002"
    downstream_connect_timeout_s: float = 2.0
    # Per call: reads, writes and logins; a prediction (model call, Grad-CAM) may take longer.
    downstream_timeout_s: float = 10.0
    predict_timeout_s: float = 30.0
    # How long `/ready` waits for each downstream's own `/ready`.
    readiness_timeout_s: float = 3.0

    # Idempotent calls that failed on the way (refused, reset) are tried this often in all,
    # with exponential backoff from retry_backoff_s.
    retry_attempts: int = Field(default=3, ge=1, le=10)
    retry_backoff_s: float = Field(default=0.05, ge=0)
    # After this many consecutive failed calls a downstream's circuit opens: calls fail at
    # once with 503 for breaker_reset_s, then one call tests the service again.
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_reset_s: float = Field(default=15.0, gt=0)

    # Rate limits in the `limits` notation ("100/hour", "10 per minute", "5/second;100/hour").
    rate_limit_predictions: str = "100/hour"  # per user
    rate_limit_login: str = "10/minute"  # per client address
    rate_limit_general: str = "600/minute"  # per client address, every /api/v1 route
    # Counts are kept in memory (one gateway) or in Redis, shared by every replica.
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("GATEWAY_REDIS_URL", "REDIS_URL")
    )

    # Browsers on these origins may call the API (comma-separated, e.g.
    # "https://cds.example.org"); none by default: the frontend calls from its server.
    cors_origins: str = ""
    # Request bodies beyond these are cut off while they stream in (413).
    max_upload_bytes: int = 20 * 1024 * 1024
    max_body_bytes: int = 1024 * 1024

    @field_validator("rate_limit_predictions", "rate_limit_login", "rate_limit_general")
    @classmethod
    def _parseable(cls, value: str) -> str:
        from limits import parse_many

        parse_many(value)  # raises ValueError naming the bad part
        return value

    def downstream_urls(self) -> dict[str, str]:
        return {"auth": self.auth_url, "inference": self.inference_url, "data": self.data_url}

    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
