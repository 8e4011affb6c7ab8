"""The assistant's request and answer as API consumers see them in `/openapi.json`."""

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.predictions.schemas import Assessment, Check, HeatmapFocus, Label, Reason


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

    label: Label | None = Field(description="None when the image could not be assessed")
    probability: float | None = Field(description="The model's probability of `label`")
    probabilities: dict[str, float]
    threshold: float
    model_version: str
    reviewed: bool
    heatmap_focus: HeatmapFocus | None
    assessment: Assessment | None = Field(
        description="None for predictions stored before assessments were recorded"
    )
    reasons: list[Reason]
    failed_checks: list[Check] = Field(description="The measures behind the reasons")


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
