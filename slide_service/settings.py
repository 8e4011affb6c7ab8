from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from common.settings import DatabaseServiceSettings, TokenCheckingSettings

GIB = 1024**3
MIB = 1024**2
# Signs view grants where nothing else is configured; refused in production (see view_link_key).
DEVELOPMENT_VIEW_LINK_SECRET = "development-only slide view-link secret, never in production"  # noqa: S105  (public on purpose)
MIN_SECRET_BYTES = 32
# One 256 px deep-zoom tile between two levels of a plain halving pyramid.
DEEPZOOM_READ_FLOOR = 512 * 512


class SlideSettings(TokenCheckingSettings, DatabaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SLIDE_")

    port: int = 8003
    database_url: str = "postgresql://postgres@127.0.0.1:5432/slides"
    # Content-addressed slide files; it must be on persistent storage.
    storage_dir: Path = Path("var/slides")
    max_upload_bytes: int = Field(default=4 * GIB, ge=1)
    max_archive_members: int = Field(default=10_000, ge=1)
    max_archive_bytes: int = Field(default=8 * GIB, ge=1)
    # The most pixels one read may hold (a thumbnail, one deep-zoom tile's source region):
    # a slide whose pyramid needs more is refused at upload, since a read that large
    # takes GBs of memory (64 MP, about 256 MB in RGBA).
    max_read_pixels: int = Field(default=64_000_000, ge=DEEPZOOM_READ_FLOOR)
    view_link_secret: SecretStr | None = None
    view_link_secret_file: Path | None = None
    view_link_ttl_s: int = Field(default=600, ge=1)
    # The analysis worker's Ed25519 private key (PEM text, or a file; a secret): it signs the
    # service token each patch batch takes to the inference service (no user's bearer token
    # there), which checks it with INFERENCE_SLIDE_WORKER_PUBLIC_KEY.
    worker_signing_key: SecretStr | None = None
    worker_signing_key_file: Path | None = None
    tile_cache_bytes: int = Field(default=256 * MIB, ge=0)
    open_slides: int = Field(default=16, ge=1)
    read_threads: int = Field(default=8, ge=1)
    max_page_size: int = Field(default=100, ge=1)
    # Slide analyses: the inference service's batch endpoint, and the workers.
    inference_url: str = "http://127.0.0.1:8001"
    inference_timeout_s: float = Field(default=120.0, gt=0)
    # How long a worker waits out an inference service that is away before the job fails
    # this attempt (it is retried with backoff, MAX_ATTEMPTS in all).
    inference_wait_s: float = Field(default=120.0, gt=0)
    analysis_batch_tiles: int = Field(default=64, ge=1, le=256)
    # Analyses waiting or running per user; more are refused (one runs at a time per user).
    analysis_max_active_per_user: int = Field(default=5, ge=1)
    worker_concurrency: int = Field(default=1, ge=1)
    worker_metrics_port: int = Field(default=9103, ge=0, le=65535)
    worker_heartbeat_s: float = Field(default=5.0, gt=0)
    # A worker silent this long is dead: its job goes back on the queue.
    worker_stalled_after_s: float = Field(default=30.0, gt=0)
    worker_stalled_check_s: float = Field(default=10.0, gt=0)
    worker_shutdown_s: float = Field(default=30.0, gt=0)

    def view_link_key(self) -> bytes:
        """The HS256 key of view grants: from the file, else the variable; in development
        and tests a fixed default. Production refuses to start without one of 32 bytes."""
        secret: str | None = None
        if self.view_link_secret_file is not None:
            secret = self.view_link_secret_file.read_text().strip()
        elif self.view_link_secret is not None:
            secret = self.view_link_secret.get_secret_value()
        if secret is None and self.environment != "production":
            secret = DEVELOPMENT_VIEW_LINK_SECRET
        if secret is None or len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"SLIDE_VIEW_LINK_SECRET (or SLIDE_VIEW_LINK_SECRET_FILE) must be set to at "
                f"least {MIN_SECRET_BYTES} bytes in production"
            )
        return secret.encode()


@lru_cache
def get_settings() -> SlideSettings:
    return SlideSettings()
