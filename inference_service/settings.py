from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from common.settings import DatabaseServiceSettings, TokenCheckingSettings
from ml.assessment import Reason


class InferenceSettings(TokenCheckingSettings, DatabaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INFERENCE_")

    port: int = 8001
    database_url: str = "postgresql://postgres@127.0.0.1:5432/inference"

    # Model version folders; registration accepts folders below it only.
    models_dir: Path = Path("var/models")
    # When no version is active at start, register the folders found and activate the newest.
    auto_register: bool = True
    # Load the active model at start instead of at the first prediction.
    warm_up: bool = False
    # How often a replica checks which version is active (seconds).
    registry_poll_s: float = Field(default=2.0, gt=0)

    # Dynamic batching: a model call takes up to this many images, waiting at most this long
    # for more to arrive (defaults from benchmarks/inference_service.py).
    batch_max_size: int = Field(default=32, ge=1, le=256)
    batch_max_wait_ms: float = Field(default=2.0, ge=0)
    # Images per POST /predict/batch.
    max_batch_images: int = Field(default=32, ge=1)

    # Upload limits: bytes, and pixels (checked from the header, before decoding).
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_pixels: int = Field(default=40_000_000, ge=1)
    # A larger image is decoded reduced (by a whole factor) to at most this many pixels on
    # its longest side; the model takes far fewer, and the overlay is made at that size.
    max_image_side: int = Field(default=2048, ge=256)
    # What the images in flight may take at once, estimated from their headers (MiB), and
    # how long a request waits for its share before it is answered 503 (less than the
    # gateway's GATEWAY_PREDICT_TIMEOUT_S, so the caller hears why).
    image_memory_mb: int = Field(default=256, ge=16)
    image_memory_wait_s: float = Field(default=20.0, gt=0)

    # Reason codes (`ml.assessment.Reason`) whose failed check only warns: the image is still
    # assessed. Every other failed check refuses a verdict (not_assessable, or indeterminate
    # for the model's own: out_of_distribution, near_threshold). A JSON list in the environment.
    assessment_warn_only: list[str] = Field(default_factory=list)

    @field_validator("assessment_warn_only")
    @classmethod
    def _known_reasons(cls, value: list[str]) -> list[str]:
        known = {reason.value for reason in Reason}
        unknown = [code for code in value if code not in known]
        if unknown:
            raise ValueError(f"unknown reason codes {unknown}; known: {sorted(known)}")
        return value


@lru_cache
def get_settings() -> InferenceSettings:
    return InferenceSettings()
