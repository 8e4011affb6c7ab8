from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import DatabaseServiceSettings, TokenCheckingSettings


class DataSettings(TokenCheckingSettings, DatabaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DATA_")

    port: int = 8002
    database_url: str = "postgresql://postgres@127.0.0.1:5432/data"
    # Content-addressed image files live here; it must be on persistent storage.
    storage_dir: Path = Path("var/data/images")
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_pixels: int = Field(default=40_000_000, ge=1)
    max_page_size: int = Field(default=100, ge=1)
    # Files without a row older than this are removed (left by a crash before the commit).
    orphan_grace_s: float = Field(default=3600.0, gt=0)
    # The gateway's service-token public key (PEM text, or a file): only requests the
    # gateway signed with its private key may store predictions. Without it, none may.
    gateway_service_public_key: str | None = None
    gateway_service_public_key_file: Path | None = None


@lru_cache
def get_settings() -> DataSettings:
    return DataSettings()
