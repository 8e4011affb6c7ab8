from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from common.settings import DatabaseServiceSettings


class AuthSettings(DatabaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_")

    port: int = 8000
    database_url: str = "postgresql://postgres@127.0.0.1:5432/auth"

    # Tokens. The audience is what every verifying service expects in `aud`.
    jwt_issuer: str = "cds-auth"
    jwt_audience: str = "cds-api"
    access_token_ttl_s: int = Field(default=900, gt=0)
    refresh_token_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    # Signing keys: a folder of Ed25519 private keys in PEM (the newest signs, older ones stay
    # published until the tokens they signed have expired), or one PEM key in the environment.
    keys_dir: Path | None = Path("var/keys")
    signing_key: SecretStr | None = None

    # Argon2id parameters (RFC 9106's second recommended option by default). Hashes made
    # with other parameters are re-hashed at the next successful login.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)

    # Login throttling (see auth_service/throttling/service.py). An account is locked for one
    # client address after this many failures in a row from it, for a delay that doubles with
    # every further failure; a client address failing across accounts gets the same
    # treatment from a higher threshold. Failures older than the window are forgotten.
    throttle_account_address_failures: int = Field(default=5, ge=1)
    throttle_address_failures: int = Field(default=20, ge=1)
    throttle_base_delay_s: float = Field(default=30.0, gt=0)
    throttle_max_delay_s: float = Field(default=900.0, gt=0)
    throttle_window_s: float = Field(default=3600.0, gt=0)
    # Guessing spread over many addresses: after this many failures on one account from
    # addresses it has not signed in from, each further attempt from such an address waits a
    # delay that doubles from the base up to the max. Seconds, never a lockout: the user
    # waits at most the max from a new address, and not at all from a known one.
    throttle_account_failures: int = Field(default=10, ge=1)
    throttle_account_base_delay_s: float = Field(default=1.0, gt=0)
    throttle_account_max_delay_s: float = Field(default=30.0, gt=0, le=60)
    # An address a successful login came from stays known to its account this long.
    throttle_known_address_days: int = Field(default=90, ge=1)

    # The first administrator, created at start when no active admin exists.
    admin_email: str | None = Field(
        default=None, validation_alias=AliasChoices("AUTH_ADMIN_EMAIL", "ADMIN_EMAIL")
    )
    admin_password: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AUTH_ADMIN_PASSWORD", "ADMIN_PASSWORD")
    )
    admin_full_name: str = "Administrator"

    @property
    def access_token_ttl(self) -> timedelta:
        return timedelta(seconds=self.access_token_ttl_s)

    @property
    def refresh_token_ttl(self) -> timedelta:
        return timedelta(seconds=self.refresh_token_ttl_s)


@lru_cache
def get_settings() -> AuthSettings:
    return AuthSettings()
