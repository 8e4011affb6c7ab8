from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class AuthSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_")

    port: int = 8000
    database_url: str = "postgresql://postgres@127.0.0.1:5432/auth"


@lru_cache
def get_settings() -> AuthSettings:
    return AuthSettings()
