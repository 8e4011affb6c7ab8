"""The settings base every component derives its own settings object from."""

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Values read from environment variables (or a local `.env`), with defaults for a dev machine.

    Each component subclasses this with its own `env_prefix` (for example `AUTH_`), so one
    `.env` file can hold every component's settings without collisions.
    """

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    environment: Literal["development", "test", "production"] = "development"
    # Where the process listens. Containers set HOST=0.0.0.0; on a dev machine nothing
    # but loopback should reach a service directly.
    host: str = "127.0.0.1"
    port: int
