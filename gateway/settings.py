from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from common.settings import TokenCheckingSettings


class GatewaySettings(TokenCheckingSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    port: int = 8004
    inference_url: str = "http://127.0.0.1:8001"
    data_url: str = "http://127.0.0.1:8002"
    slide_url: str = "http://127.0.0.1:8003"
    downstream_connect_timeout_s: float = 2.0
    # Per call: reads, writes and logins; a prediction (model call, Grad-CAM) may take longer.
    downstream_timeout_s: float = 10.0
    predict_timeout_s: float = 30.0
    # A slide upload streams for minutes: this bounds each wait for the slide service (each
    # write of a chunk, and its answer after the last one), not the whole upload. After the
    # last byte the service syncs up to 4 GiB to disk, may unpack an 8 GiB zip and then
    # checks it: giving up sooner answers 504 for a slide that is then stored anyway.
    slide_upload_timeout_s: float = Field(default=600.0, gt=0)
    # How long `/ready` waits for each downstream's own `/ready`.
    readiness_timeout_s: float = 3.0
    # How long the gateway's public `/ready` answer is reused: a flood of calls reaches the
    # downstreams at most once per interval.
    readiness_cache_s: float = Field(default=1.0, ge=0, le=10)

    # Ended sessions: a deactivated user's access token, or one issued before a password
    # reset, is refused within this many seconds (each user's status is asked of the auth
    # service at most this often), and at most this many users' statuses are kept.
    account_status_cache_s: float = Field(default=10.0, ge=0, lt=30)
    account_status_cache_size: int = Field(default=10_000, ge=1)

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
    rate_limit_assistant: str = "100/hour"  # per user, the assistant's answers
    # Per client address, deep-zoom tiles only (they count against nothing else): a viewer
    # panning across a slide asks for a few hundred tiles a minute.
    rate_limit_slide_tiles: str = "6000/minute"
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
    # A whole-slide file (scanners write 1-5 GB), streamed through, never held.
    max_slide_bytes: int = Field(default=4 * 1024**3, gt=0)

    # The gateway's own Ed25519 private key (PEM text, or a file), with which it signs the
    # service token that lets it alone store predictions in the data service (which holds
    # the public key). Without it, predictions cannot be stored.
    service_signing_key: SecretStr | None = None
    service_signing_key_file: Path | None = None

    # The clinician assistant. "auto": OpenAI when its key is set, else Anthropic when its
    # key is set, else the offline templates. A provider named without its key is refused.
    assistant_provider: Literal["auto", "openai", "anthropic", "offline"] = "auto"
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GATEWAY_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_model: str = "gpt-5-mini"
    openai_base_url: str = "https://api.openai.com/v1"
    # For reasoning models (gpt-5*, o*): their hidden reasoning counts against the output
    # budget. Set empty for a model without reasoning, which refuses the parameter.
    openai_reasoning_effort: Literal["", "none", "minimal", "low", "medium", "high"] = "low"
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("GATEWAY_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
    )
    anthropic_model: str = "claude-haiku-4-5"
    anthropic_base_url: str = "https://api.anthropic.com"
    # Per provider call; the vendor's client retries 429, 5xx and lost connections this
    # often, with backoff (honouring Retry-After), before the offline answer is used. After
    # the deadline the provider is given up for the offline answer: keep it well within the
    # frontend's request timeout (30 s), which also covers reading the facts.
    assistant_timeout_s: float = Field(default=10.0, gt=0)
    assistant_retries: int = Field(default=2, ge=0, le=5)
    assistant_deadline_s: float = Field(default=25.0, gt=0)
    # Token budget of one exchange: the answer's (a reasoning model's reasoning included; an
    # answer cut off by it is not used), and the prompt's (facts, guide, question and the
    # newest turns of the conversation that fit; about 4 characters a token).
    assistant_max_output_tokens: int = Field(default=1500, ge=256, le=16_384)
    assistant_max_input_tokens: int = Field(default=4000, ge=2000, le=100_000)

    @field_validator(
        "rate_limit_predictions",
        "rate_limit_login",
        "rate_limit_general",
        "rate_limit_assistant",
        "rate_limit_slide_tiles",
    )
    @classmethod
    def _parseable(cls, value: str) -> str:
        from limits import parse_many

        parse_many(value)  # raises ValueError naming the bad part
        return value

    @model_validator(mode="after")
    def _named_provider_has_its_key(self) -> "GatewaySettings":
        keys = {"openai": self.openai_api_key, "anthropic": self.anthropic_api_key}
        if self.assistant_provider in keys:
            key = keys[self.assistant_provider]
            if key is None or not key.get_secret_value():
                raise ValueError(
                    f"assistant_provider {self.assistant_provider} needs its API key "
                    f"({self.assistant_provider.upper()}_API_KEY)"
                )
        return self

    def downstream_urls(self) -> dict[str, str]:
        return {
            "auth": self.auth_url,
            "inference": self.inference_url,
            "data": self.data_url,
            "slides": self.slide_url,
        }

    def assistant_choice(self) -> str:
        """The provider that answers: the configured one, or the first with a key."""
        if self.assistant_provider != "auto":
            return self.assistant_provider
        if self.openai_api_key and self.openai_api_key.get_secret_value():
            return "openai"
        if self.anthropic_api_key and self.anthropic_api_key.get_secret_value():
            return "anthropic"
        return "offline"

    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
