"""The settings base every component derives its own settings object from."""

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Values read from environment variables (or a local `.env`), with defaults for a dev machine.

    Each component subclasses this with its own `env_prefix` (for example `AUTH_`), so one
    `.env` file can hold every component's settings without collisions.
    """

    # An empty variable (as copied from .env.example) means "use the default".
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    environment: Literal["development", "test", "production"] = "development"
    # Where the process listens. Containers set HOST=0.0.0.0; on a dev machine nothing
    # but loopback should reach a service directly.
    host: str = "127.0.0.1"
    port: int
    # Addresses whose X-Forwarded-For is believed (the gateway, a reverse proxy), so that the
    # client address in logs and throttling is the real one. Comma-separated; "*" trusts all.
    forwarded_allow_ips: str = "127.0.0.1"


class TokenCheckingSettings(ServiceSettings):
    """Settings of a service that checks the auth service's bearer tokens."""

    # The auth service, whose `/.well-known/jwks.json` has the public keys.
    auth_url: str = "http://127.0.0.1:8000"
    # Must match the auth service's AUTH_JWT_ISSUER and AUTH_JWT_AUDIENCE.
    jwt_issuer: str = "cds-auth"
    jwt_audience: str = "cds-api"
    jwks_cache_ttl_s: float = 300.0


class DatabaseServiceSettings(ServiceSettings):
    """Settings of a service with its own PostgreSQL database."""

    # The login the service runs as.
    database_url: str
    # The login that owns the schema and runs the migrations; unset, `database_url`'s. When
    # the two logins differ, every migration ends by granting the runtime login only what
    # the service needs on the tables (common/migrations.py), so that it cannot alter or
    # drop them, nor rewrite what is append-only.
    migration_database_url: str | None = None

    @property
    def migration_url(self) -> str:
        return self.migration_database_url or self.database_url
