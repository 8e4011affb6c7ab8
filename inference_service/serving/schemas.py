from typing import Literal

from pydantic import BaseModel, Field

from ml.assessment import Assessment, Reason


class HeatmapFocusOut(BaseModel):
    region: str | None = Field(
        description="Where the strongest hot area's weighted centre lies on a 3 x 3 grid, "
        "e.g. 'upper left'"
    )
    peak_region: str | None = Field(description="The grid cell of the strongest activation")
    hot_area_fraction: float = Field(
        ge=0, le=1, description="Share of the image at or above half the peak activation"
    )
    spread: Literal["focal", "moderate", "diffuse", "none"]
    areas: int = Field(ge=0, description="Separate hot areas; `region` is the strongest's")


class CheckOut(BaseModel):
    """One measure of the image against its limit (`ml.assessment.Check`)."""

    measure: str = Field(
        description="What was measured: out_of_distribution_score and "
        "distance_from_threshold come from the model"
    )
    value: float
    limit: float
    comparison: Literal["at_least", "at_most"] = Field(
        description="The value passes when it is at least or at most the limit"
    )
    reason: Reason = Field(description="What a failure of this check means")
    passed: bool


class PredictionOut(BaseModel):
    assessment: Assessment = Field(
        description="assessable; indeterminate (a label is given, but the image is unlike the "
        "training data or its probability lies in the band around the threshold where the "
        "model was too often wrong on validation); not_assessable (no label)"
    )
    reasons: list[Reason] = Field(
        description="The reason of every failed check, in order, each once; a check the "
        "site's policy only warns about is named too"
    )
    checks: list[CheckOut] = Field(
        description="Every check that applied; a check whose statistics the model version "
        "lacks (an older card) is left out"
    )
    label: str | None = Field(
        description="benign or malignant, at the decision threshold on the calibrated "
        "probability; null exactly when the assessment is not_assessable"
    )
    probability: float | None = Field(
        description="The calibrated probability of that label; null exactly when label is"
    )
    probabilities: dict[str, float] = Field(
        description="Calibrated (temperature scaling, when the model card has it) "
        "probability of each class, always given (kept for audit when not assessable)"
    )
    model_version: str
    threshold: float = Field(
        description="Calibrated P(malignant) at or above which the label is malignant"
    )
    latency_ms: float
    heatmap_png_base64: str | None = Field(
        default=None,
        description="Grad-CAM overlay at the image's own size, reduced by a whole factor "
        "when longer than max_image_side (heatmap=true)",
    )
    heatmap_focus: HeatmapFocusOut | None = Field(
        default=None, description="Where the Grad-CAM map concentrates (heatmap=true)"
    )


class BatchPredictionOut(BaseModel):
    model_version: str
    items: list[PredictionOut]


class GradcamOut(BaseModel):
    """A Grad-CAM map toward the patch's label at the last convolution's resolution: row-major
    uint8 (0-255 for 0 to the map's peak), base64. Stretch it over the patch to show it."""

    shape: tuple[int, int] = Field(description="rows, columns")
    data_base64: str


class PatchOut(BaseModel):
    """One patch of a .npy batch: what `PredictionOut` says, without the per-check detail."""

    assessment: Assessment
    reasons: list[Reason] = Field(description="The reason of every failed check, each once")
    label: str | None = Field(description="null exactly when the assessment is not_assessable")
    probability: float | None = Field(description="Of the label; null exactly when label is")
    malignant_probability: float = Field(
        ge=0, le=1, description="Calibrated P(malignant), always given (kept for audit)"
    )
    gradcam: GradcamOut | None = Field(
        default=None, description="With heatmap=true, for a patch that gets a label"
    )


class PatchBatchOut(BaseModel):
    model_version: str
    threshold: float = Field(
        description="Calibrated P(malignant) at or above which the label is malignant"
    )
    quality_checked: bool = Field(description="Whether the image quality checks were run")
    latency_ms: float
    items: list[PatchOut] = Field(description="One per patch, in the array's order")
