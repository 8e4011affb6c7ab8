"""The public API's request and answer shapes, as API consumers see them in `/openapi.json`.

They are the contract: requests are checked against them here, before any downstream call,
and answers are the downstream services' own, documented with these models.
"""

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Label = Literal["benign", "malignant"]
Sex = Literal["female", "male", "other", "unknown"]
PATIENT_REFERENCE = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$"


class ErrorBody(BaseModel):
    code: str = Field(examples=["rate_limited"], description="Stable, machine-readable")
    message: str = Field(examples=["Too many prediction requests; try again in 60 s."])
    request_id: str = Field(description="Quote it when reporting a problem")


class ErrorEnvelope(BaseModel):
    error: ErrorBody


Role = Literal["admin", "clinician", "viewer"]


class TokenPair(BaseModel):
    access_token: str = Field(description="Send as `Authorization: Bearer ...`")
    refresh_token: str = Field(description="For /auth/refresh; each is usable once")
    token_type: Literal["bearer"]
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires")


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=4096, examples=["eyJ..."])


class User(BaseModel):
    id: uuid.UUID
    email: str
    full_name: str
    role: Role
    is_active: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class UserPage(BaseModel):
    items: list[User]
    total: int
    limit: int
    offset: int


class UserCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "dr.lee@hospital.example",
                    "full_name": "Dr Lee",
                    "role": "clinician",
                    "password": "a long unusual passphrase",
                }
            ]
        }
    )

    email: str = Field(max_length=320)
    full_name: str = Field(min_length=1, max_length=200)
    role: Role
    password: str = Field(description="At least 12 characters, not a common password")


class UserUpdate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"role": "viewer"}, {"is_active": False}]}
    )

    full_name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    is_active: bool | None = None
    password: str | None = Field(default=None, description="A new password")


class HeatmapFocus(BaseModel):
    region: str | None = Field(
        description="Where the strongest hot area's weighted centre lies on a 3 x 3 grid",
        examples=["upper left"],
    )
    peak_region: str | None = Field(description="The grid cell of the strongest activation")
    hot_area_fraction: float = Field(
        ge=0, le=1, description="Share of the image at or above half the peak activation"
    )
    spread: Literal["focal", "moderate", "diffuse", "none"]
    areas: int = Field(
        default=1, ge=0, description="Separate hot areas; `region` is the strongest's"
    )


class Prediction(BaseModel):
    id: uuid.UUID
    image_id: uuid.UUID = Field(description="The analysed image: GET .../{id}/image")
    patient_id: uuid.UUID | None
    model_version: str = Field(examples=["demo-synthetic-1"])
    label: Label = Field(description="The model's assessment at its decision threshold")
    probability: float = Field(ge=0, le=1, description="The model's probability of `label`")
    probabilities: dict[str, float] = Field(examples=[{"benign": 0.08, "malignant": 0.92}])
    threshold: float = Field(description="P(malignant) at or above which the label is malignant")
    latency_ms: float = Field(description="Model time for this image")
    heatmap_ref: str | None = Field(
        description="Set when a Grad-CAM overlay was stored: GET .../{id}/heatmap"
    )
    heatmap_focus: HeatmapFocus | None = Field(
        default=None, description="Where the Grad-CAM map concentrates, with the overlay"
    )
    requested_by: uuid.UUID
    created_at: datetime
    reviewed: bool = Field(description="Whether a clinician has reviewed it")


class PredictionPage(BaseModel):
    items: list[Prediction]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class ReviewCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"verdict": "agree", "comment": "Consistent with the slide."},
                {"verdict": "disagree", "corrected_label": "benign"},
            ]
        },
    )

    verdict: Literal["agree", "disagree"]
    corrected_label: Label | None = Field(default=None, description="Required to disagree")
    comment: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _correction_goes_with_disagreement(self) -> "ReviewCreate":
        if (self.verdict == "disagree") != (self.corrected_label is not None):
            raise ValueError("corrected_label is required to disagree and refused to agree")
        return self


class Review(BaseModel):
    id: uuid.UUID
    prediction_id: uuid.UUID
    reviewer: uuid.UUID
    verdict: Literal["agree", "disagree"]
    corrected_label: str | None
    comment: str | None
    is_current: bool = Field(description="False once a later review replaced it")
    created_at: datetime


class PatientCreate(BaseModel):
    """A pseudonymised patient: the hospital's reference, never a name."""

    model_config = ConfigDict(extra="forbid")

    external_ref: str = Field(pattern=PATIENT_REFERENCE, examples=["H-2026-00042"])
    birth_year: int | None = Field(default=None, ge=1900, le=2100, examples=[1961])
    sex: Sex = "unknown"
    notes: str | None = Field(default=None, max_length=2000)


class PatientUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"sex": "female"}]})

    external_ref: str | None = Field(default=None, pattern=PATIENT_REFERENCE)
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    sex: Sex | None = None
    notes: str | None = Field(default=None, max_length=2000)


class Patient(BaseModel):
    id: uuid.UUID
    external_ref: str
    birth_year: int | None
    sex: Sex
    notes: str | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class PatientPage(BaseModel):
    items: list[Patient]
    total: int
    limit: int
    offset: int


class DayCount(BaseModel):
    day: date
    count: int
    by_label: dict[str, int] = Field(examples=[{"benign": 9, "malignant": 3}])


class ReviewStats(BaseModel):
    current: int = Field(description="Reviews in force (the latest per prediction)")
    agree: int = Field(description="Of those, agreements with the model")
    reviewed_predictions: int
    agreement_rate: float | None = Field(description="agree / current; null before any review")


class Stats(BaseModel):
    predictions: int = Field(description="Predictions in the period")
    mean_latency_ms: float | None = Field(description="Mean model time per image")
    p95_latency_ms: float | None = Field(description="95th percentile of the model time")
    by_label: dict[str, int] = Field(examples=[{"benign": 120, "malignant": 41}])
    by_day: list[DayCount] = Field(description="UTC days, oldest first")
    by_model_version: dict[str, int]
    reviews: ReviewStats


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


def error_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the envelope's schema.
    `descriptions` override the default wording, keyed `s404="..."`."""
    return {
        status: {
            "model": ErrorEnvelope,
            "description": descriptions.get(f"s{status}", ERROR_DESCRIPTIONS[status]),
        }
        for status in statuses
    }


ERROR_DESCRIPTIONS = {
    400: "The request cannot be read",
    401: "Missing, invalid or expired token",
    403: "The caller's role may not do this",
    404: "No such resource",
    409: "Conflicts with what is stored",
    413: "The body is too large",
    415: "Not a supported media type",
    422: "A field is invalid (the message says which)",
    429: "Over a rate limit; see Retry-After and X-RateLimit-*",
    503: "A downstream service is unavailable (named in the message); see Retry-After",
    504: "A downstream service did not answer in time",
}


class ChatTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str = Field(min_length=1, max_length=4000)


class ExplainRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {},
                {"question": "What does the decision threshold mean?"},
                {
                    "question": "Where should I look on the slide?",
                    "history": [
                        {"role": "user", "content": "Explain this prediction to me."},
                        {"role": "assistant", "content": "The model assessed ..."},
                    ],
                },
            ]
        },
    )

    question: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        pattern=r"\S",
        description="A follow-up question; without one, the prediction is explained",
    )
    history: list[ChatTurn] = Field(
        default_factory=list,
        max_length=20,
        description="The conversation so far, oldest first; the newest turns that fit the "
        "token budget are kept",
    )


class ExplanationFacts(BaseModel):
    """The stored facts the answer was built from (nothing about the patient)."""

    label: Label
    probability: float = Field(description="The model's probability of `label`")
    probabilities: dict[str, float]
    threshold: float
    model_version: str
    reviewed: bool
    heatmap_focus: HeatmapFocus | None


class Explanation(BaseModel):
    prediction_id: uuid.UUID
    kind: Literal["explanation", "follow_up"]
    answer: str = Field(description="Plain language, for a clinician")
    provider: Literal["openai", "anthropic", "offline"] = Field(
        description="Who produced the answer: a language model, or the built-in templates"
    )
    model: str | None = Field(examples=["gpt-5-mini", "templates"])
    replaced: bool = Field(
        description="The language model's answer could not be used (it contradicted the "
        "stored facts, or the provider failed) and the offline one is given instead"
    )
    replaced_reason: Literal["contradicts_facts", "provider_error"] | None
    attempted_provider: str | None = Field(description="Whose answer was replaced")
    facts: ExplanationFacts
    caveat: str
    prompt_sha256: str = Field(description="Identifies the prompt in the audit trail")
    latency_ms: float
    audit_event_id: int
