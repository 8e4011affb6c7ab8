from dataclasses import fields
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from common.settings import DatabaseServiceSettings, TokenCheckingSettings
from ml.assessment import Reason
from ml.quality import QualityLimits

# The defaults of the quality limits, chosen on the evaluation set (see `QualityLimits`).
_LIMITS = QualityLimits()


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
    # Images per POST /predict/batch sent as multipart files.
    max_batch_images: int = Field(default=32, ge=1)
    # Patches per POST /predict/batch sent as one .npy array, the longest side of a patch, and
    # the bytes of the array (256 patches of 128 x 128 take 12 MiB).
    max_batch_patches: int = Field(default=256, ge=1)
    max_batch_patch_side: int = Field(default=1024, ge=16)
    max_batch_array_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)

    # The runtime of the prediction pass (Grad-CAM always runs on TensorFlow): `auto` serves
    # the fastest that passed parity, by the in-process measurements the card records
    # (`ml.conversion`), else TensorFlow; a runtime named here but refused on the card is not
    # served. Threads of the LiteRT and ONNX Runtime runners.
    runtime: Literal["auto", "tensorflow", "litert", "onnxruntime"] = "auto"
    runtime_threads: int = Field(default=2, ge=1, le=64)

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

    # Assessability: the limit of every image quality check (`ml.quality.QualityLimits`,
    # whose docstring and the README's "Assessability" section say why each default).
    quality_min_tissue_fraction: float = Field(default=_LIMITS.min_tissue_fraction, ge=0, le=1)
    quality_tissue_od_floor: float = Field(default=_LIMITS.tissue_od_floor, ge=0)
    quality_tissue_od_ceiling: float = Field(default=_LIMITS.tissue_od_ceiling, ge=0)
    quality_min_focus: float = Field(default=_LIMITS.min_focus, ge=0)
    quality_min_he_plausibility: float = Field(default=_LIMITS.min_he_plausibility, ge=0, le=1)
    quality_max_pen_fraction: float = Field(default=_LIMITS.max_pen_fraction, ge=0, le=1)
    quality_max_bright_fraction: float = Field(default=_LIMITS.max_bright_fraction, ge=0, le=1)
    quality_max_dark_fraction: float = Field(default=_LIMITS.max_dark_fraction, ge=0, le=1)
    # Reason codes (`ml.assessment.Reason`) whose failed check only warns: the image is still
    # assessed. Every other failed check refuses a verdict (not_assessable, or indeterminate
    # for the model's own: out_of_distribution, near_threshold). A JSON list in the environment.
    assessment_warn_only: list[Reason] = Field(default_factory=list)

    # The slide-analysis workers' service-token public key (PEM text, or a file): a worker
    # has no user's bearer token, so it sends .npy patch batches with a service token signed
    # by its private key (SLIDE_WORKER_SIGNING_KEY) instead. Without it, none is accepted.
    slide_worker_public_key: str | None = None
    slide_worker_public_key_file: Path | None = None

    @model_validator(mode="after")
    def _floor_below_ceiling(self) -> "InferenceSettings":
        if self.quality_tissue_od_floor > self.quality_tissue_od_ceiling:
            raise ValueError("QUALITY_TISSUE_OD_FLOOR must not exceed QUALITY_TISSUE_OD_CEILING")
        return self


def quality_limits(settings: InferenceSettings) -> QualityLimits:
    """The site's quality limits, from its settings."""
    # Each limit's setting is its name with `quality_` before it.
    names = [limit.name for limit in fields(QualityLimits)]
    return QualityLimits(**{name: getattr(settings, f"quality_{name}") for name in names})


@lru_cache
def get_settings() -> InferenceSettings:
    return InferenceSettings()
