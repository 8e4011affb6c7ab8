from functools import lru_cache
from pathlib import Path

from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class DataSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DATA_")

    port: int = 8002
    database_url: str = "postgresql://postgres@127.0.0.1:5432/data"
    # Content-addressed image files live here; it must be on persistent storage.
    storage_dir: Path = Path("var/data/images")


@lru_cache
def get_settings() -> DataSettings:
    return DataSettings()
