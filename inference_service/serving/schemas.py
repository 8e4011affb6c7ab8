from pydantic import BaseModel, Field


class PredictionOut(BaseModel):
    label: str = Field(description="benign or malignant, at the model's decision threshold")
    probability: float = Field(description="The model's probability of that label")
    probabilities: dict[str, float]
    model_version: str
    threshold: float = Field(description="P(malignant) at or above which the label is malignant")
    latency_ms: float
    heatmap_png_base64: str | None = Field(
        default=None, description="Grad-CAM overlay at the image's own size (heatmap=true)"
    )


class BatchPredictionOut(BaseModel):
    model_version: str
    items: list[PredictionOut]
