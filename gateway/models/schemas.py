"""Registered model versions, as `/openapi.json` documents the inference service's
registry."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class ModelVersion(BaseModel):
    version: str = Field(examples=["demo-synthetic-1"])
    status: Literal["registered", "active", "archived"]
    classes: list[str]
    input_shape: list[int]
    metrics: dict[str, Any] = Field(description="Test-set metrics from the model card")
    checksum_sha256: str
    created_by: str | None
    created_at: datetime
    activated_by: str | None
    activated_at: datetime | None


class ModelVersionDetail(ModelVersion):
    path: str
    card: dict[str, Any] = Field(description="The whole model card")
    reports: dict[str, Any] = Field(
        description="Evaluation, data-exploration and preprocessing reports of its training run"
    )
    figures: list[str] = Field(
        description="PNG figures of the run: GET /api/v1/models/{version}/figures/{figure}",
        examples=[["exploration/samples.png", "evaluation-test/roc_curve.png"]],
    )
