from typing import Literal

from pydantic import BaseModel, Field


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


class PredictionOut(BaseModel):
    label: str = Field(description="benign or malignant, at the model's decision threshold")
    probability: float = Field(description="The model's probability of that label")
    probabilities: dict[str, float]
    model_version: str
    threshold: float = Field(description="P(malignant) at or above which the label is malignant")
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
