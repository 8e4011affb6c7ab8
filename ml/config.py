"""`config.yaml`, validated: an unknown key or a value of the wrong type is an error that
names it (`training.epochs: Input should be a valid integer`)."""

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_CONFIG = Path(__file__).with_name("config.yaml")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    path: Path
    layout: Literal["auto", "idc", "breakhis", "folders"] = "auto"
    min_size: int = Field(default=32, ge=8)
    balance: Literal["none", "undersample", "oversample", "class_weights"] = "class_weights"
    validation_fraction: float = Field(default=0.15, gt=0, lt=1)
    test_fraction: float = Field(default=0.15, gt=0, lt=1)
    max_images: int | None = Field(default=None, ge=10)
    # The physical size of one pixel of the dataset's images (before they are resized to the
    # input side), for a layout that does not say it; given, it overrides what the layout says.
    microns_per_pixel: float | None = Field(default=None, gt=0, le=1000)
    # The side in pixels of the dataset's patches at that scale, when the images do not show it
    # (they differ in size, or are not square).
    patch_px: int | None = Field(default=None, ge=8)
    # Without a scale a model still trains (for single patches) but cannot analyse slides: its
    # card says null and training warns. True makes that an error instead.
    require_scale: bool = False

    @model_validator(mode="after")
    def _room_for_training(self) -> "DataConfig":
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError("validation_fraction + test_fraction must leave room for training")
        return self


class AugmentationConfig(Strict):
    flip: bool = True
    rotation: float = Field(default=0.25, ge=0, le=1)
    brightness: float = Field(default=0.1, ge=0, le=1)
    contrast: float = Field(default=0.1, ge=0, le=1)
    hue: float = Field(default=0.05, ge=0, le=0.5)


class ModelConfig(Strict):
    input_size: int = Field(default=128, ge=16, le=1024)
    filters: list[int] = Field(default=[32, 64, 128], min_length=1, max_length=6)
    dense_units: int = Field(default=64, ge=1)
    dropout: float = Field(default=0.3, ge=0, lt=1)
    augmentation: AugmentationConfig = AugmentationConfig()


class TrainingConfig(Strict):
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(default=1e-3, gt=0)
    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=64, ge=1)
    early_stopping_patience: int = Field(default=5, ge=1)
    seed: int = 42
    target_sensitivity: float = Field(default=0.95, gt=0, le=1)


class OutputConfig(Strict):
    models_dir: Path = Path("var/models")
    mlflow_experiment: str = "breast-histopathology"


class Config(Strict):
    data: DataConfig
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    output: OutputConfig = OutputConfig()


class ConfigError(ValueError):
    """The configuration file is missing, not YAML, or breaks the schema."""


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def load_config(path: Path = DEFAULT_CONFIG, data_path: Path | None = None) -> Config:
    """Read and check `path`; `data_path` (the `--data` option) replaces `data.path`."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must be a mapping of sections")
    if data_path is not None:
        raw.setdefault("data", {})
        if not isinstance(raw["data"], dict):
            raise ConfigError(f"{path}: data: must be a mapping")
        raw["data"]["path"] = str(data_path)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from exc
