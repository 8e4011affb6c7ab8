from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class InferenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INFERENCE_")

    port: int = 8001
    database_url: str = "postgresql://postgres@127.0.0.1:5432/inference"


@lru_cache
def get_settings() -> InferenceSettings:
    return InferenceSettings()
