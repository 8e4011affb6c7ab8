"""The model card, `model_card.json`: what a model version is, how it was made and how well it
did. Training writes it and the inference service's registry validates it with this one
schema, so a field added here is written and read alike.

Pydantic and `ml.contract` only: the inference service's image installs nothing else of `ml`.
"""

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ml.contract import input_side


class CardSection(BaseModel):
    # A card written by a newer training may hold more than this schema knows: it is kept
    # as it is, not refused, so an older replica can still register that version.
    model_config = ConfigDict(extra="allow")


class Framework(CardSection):
    tensorflow: str
    keras: str
    python: str


class ModelInput(CardSection):
    size: list[int] = Field(description="[side, side, 3]")
    dtype: str
    # Numbers as written ([0, 1] stays integers), so the card reads back unchanged.
    value_range: list[int | float]
    # The scale the model works at: the physical size of one pixel of the patches it was
    # trained on, before they were resized to `side`, and the side in pixels of those patches
    # at that scale. A slide is resampled to `microns_per_pixel` and cut into tiles of
    # `patch_px` before analysis. None when unknown (and on cards older than these fields):
    # such a model predicts single patches but cannot analyse slides.
    microns_per_pixel: float | None = Field(default=None, gt=0)
    patch_px: int | None = Field(default=None, gt=0)
    # Where the scale came from: the dataset layout's source, the `data.microns_per_pixel`
    # setting, or why it is unknown.
    scale_source: str | None = None

    @field_validator("size")
    @classmethod
    def _square_rgb(cls, value: list[int]) -> list[int]:
        input_side(value)
        return value

    @property
    def side(self) -> int:
        return self.size[0]

    @property
    def field_of_view_um(self) -> float | None:
        """The width in micrometres of tissue one patch shows, when the scale is known."""
        if self.microns_per_pixel is None or self.patch_px is None:
            return None
        return self.patch_px * self.microns_per_pixel


class Preprocessing(CardSection):
    function: str
    steps: list[str]


class ThresholdRule(CardSection):
    target: float
    metric: str
    chosen_on: str


class SplitSummary(CardSection):
    images: int
    patients: int
    classes: dict[str, int]


class TrainingData(CardSection):
    """The dataset and the recipe that split it, enough to evaluate on the same split again."""

    path: str
    layout: str
    synthetic: bool
    sha256: str
    images: int
    class_counts: dict[str, int]
    splits: dict[str, SplitSummary]
    min_size: int
    validation_fraction: float
    test_fraction: float
    balance: str
    seed: int


class TrainingRun(CardSection):
    # The configuration as it was: typing it with today's `ml.config` would refuse the card
    # of an older version once the configuration's schema changes.
    config: dict[str, Any]
    epochs_run: int
    best_epoch: int
    duration_s: float
    mlflow_run_id: str


class Metrics(CardSection):
    """Metrics on the test split at the decision threshold."""

    split: str
    images: int
    accuracy: float
    precision: float
    recall: float
    sensitivity: float
    specificity: float
    f1: float
    balanced_accuracy: float | None  # None when the split holds one class only
    roc_auc: float | None
    brier_score: float
    threshold: float


class Reports(CardSection):
    """The training run's reports, relative to the version folder."""

    preprocessing: str
    exploration: str
    evaluation: str
    training_history: str


# A sigmoid output in float32 rounds to exactly 0 or 1 beyond a logit of about +-17; the
# logit is taken of the probability kept this far from both.
PROBABILITY_EPSILON = 1e-7


def logit(probability: float) -> float:
    p = min(max(probability, PROBABILITY_EPSILON), 1.0 - PROBABILITY_EPSILON)
    return math.log(p / (1.0 - p))


class Calibration(CardSection):
    """Temperature scaling of P(malignant), fitted on validation; ECE before and after, on
    validation (`ece_*`) and on the unseen test split (`test_ece_*`)."""

    method: Literal["temperature"]
    temperature: float = Field(gt=0)
    ece_before: float = Field(ge=0, le=1)
    ece_after: float = Field(ge=0, le=1)
    test_ece_before: float | None = Field(default=None, ge=0, le=1)
    test_ece_after: float | None = Field(default=None, ge=0, le=1)
    bins: int = Field(ge=1)
    chosen_on: str

    def apply(self, malignant_probability: float) -> float:
        """The calibrated P(malignant)."""
        return 1.0 / (1.0 + math.exp(-logit(malignant_probability) / self.temperature))


class IndeterminateBand(CardSection):
    """Calibrated P(malignant) closer than `half_width` to the decision threshold is
    indeterminate; the error rates are the validation split's inside and outside."""

    half_width: float = Field(ge=0, le=1)
    chosen_on: str
    rule: str
    error_rate_inside: float | None = Field(ge=0, le=1)
    error_rate_outside: float | None = Field(ge=0, le=1)


class OutOfDistribution(CardSection):
    """The Mahalanobis distance of the `layer`'s features to the training set's (`ml.ood`),
    stored in `file`; above `threshold` an image is unlike the training data."""

    method: Literal["mahalanobis"]
    layer: str
    threshold: float = Field(ge=0)
    chosen_on: str
    quantile: float = Field(gt=0, le=1)
    file: str = Field(pattern=r"^[A-Za-z0-9._-]+\.npz$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    # The share of the test split's images scored above the threshold.
    test_flagged_fraction: float | None = Field(default=None, ge=0, le=1)


class RuntimeRecord(CardSection):
    """One runtime's conversion of the model (`ml.conversion`): its file beside the model,
    whether its outputs matched TensorFlow's on the parity images, and its in-process speed."""

    file: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    passed: bool
    # The largest absolute difference from TensorFlow on the parity images: in P(malignant),
    # and in the out-of-distribution score (None when the card has no statistics).
    max_abs_diff: float | None = None
    max_abs_diff_ood_score: float | None = None
    parity_images: int = Field(default=0, ge=0)
    parity_source: str | None = None
    # Median milliseconds of one single-image call, and images per second in calls of 32.
    single_ms: float | None = Field(default=None, ge=0)
    batch32_per_s: float | None = Field(default=None, ge=0)
    converter: dict[str, str] = Field(default_factory=dict)
    refused_reason: str | None = None
    converted_at: datetime | None = None


class ModelCard(CardSection):
    version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    created_at: datetime
    model_file: str = Field(pattern=r"^[A-Za-z0-9._-]+\.keras$")
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    architecture: str
    framework: Framework
    classes: list[str] = Field(min_length=2, max_length=2)
    output: str
    input: ModelInput
    preprocessing: Preprocessing
    decision_threshold: float = Field(ge=0, le=1)
    threshold_rule: ThresholdRule
    training_data: TrainingData
    training: TrainingRun
    metrics: Metrics
    reports: Reports
    intended_use: str
    warning: str
    # Older cards lack these: then the matching check does not apply.
    calibration: Calibration | None = None
    indeterminate_band: IndeterminateBand | None = None
    out_of_distribution: OutOfDistribution | None = None
    # The prediction pass converted to other CPU runtimes (`ml.conversion`), by runtime name
    # ("tensorflow" is the baseline the others were measured against).
    runtimes: dict[str, RuntimeRecord] | None = None
