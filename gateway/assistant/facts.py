"""What the assistant may say about a prediction: the stored prediction, its reviews (the
verdicts, not the comments: free text may name the patient) and its model's card. No
identifier of the patient, the image, the requester or the prediction is kept here."""

import asyncio
import re
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from common.errors import ServiceError
from gateway.plumbing.downstream import Downstreams
from gateway.plumbing.proxy import raise_for_answer
from gateway.predictions.schemas import Check, HeatmapFocus, Label

MALIGNANT = "malignant"
NOT_ASSESSABLE = "not_assessable"
INDETERMINATE = "indeterminate"


@dataclass(frozen=True)
class ModelFacts:
    version: str
    synthetic: bool
    target_sensitivity: float | None  # the threshold rule: sensitivity reached on validation
    threshold_chosen_on: str | None
    test_images: int | None
    test_metrics: dict[str, float]  # at the decision threshold, on the test split
    intended_use: str | None
    warning: str | None


@dataclass(frozen=True)
class ReviewFacts:
    agreed: int  # current reviews agreeing with the model
    corrections: tuple[str, ...]  # labels of current reviews disagreeing


@dataclass(frozen=True)
class PredictionFacts:
    label: Label | None  # None when the image could not be assessed
    probability: float | None  # of `label`
    probabilities: dict[str, float]
    threshold: float  # P(malignant) at or above which the label is malignant
    model_version: str
    model: ModelFacts | None  # None when the registry could not tell (see model_note)
    model_note: str | None
    has_heatmap: bool
    heatmap: HeatmapFocus | None  # None without a heatmap or for older predictions
    review: ReviewFacts
    # The assessment (None: stored before assessments were recorded), its reasons in order,
    # and the checks that failed, with their measures and limits.
    assessment: str | None = None
    reasons: tuple[str, ...] = ()
    failed_checks: tuple[Check, ...] = ()

    @property
    def verdict(self) -> bool:
        """Whether the model gave a label at all: never on an image it could not assess."""
        return self.assessment != NOT_ASSESSABLE and self.label is not None

    @property
    def other_label(self) -> str:
        return next(name for name in sorted(self.probabilities) if name != self.label)

    @property
    def malignant_probability(self) -> float:
        return self.probabilities.get(MALIGNANT, 0.0)

    @property
    def reviewed(self) -> bool:
        return bool(self.review.agreed or self.review.corrections)


TEST_METRICS = ("sensitivity", "specificity", "precision", "accuracy", "roc_auc")


def model_facts(card: dict[str, Any]) -> ModelFacts:
    rule = card.get("threshold_rule") or {}
    metrics = card.get("metrics") or {}
    training_data = card.get("training_data") or {}
    return ModelFacts(
        version=str(card.get("version", "")),
        synthetic=bool(training_data.get("synthetic", False)),
        target_sensitivity=float(rule["target"]) if rule.get("target") is not None else None,
        threshold_chosen_on=rule.get("chosen_on"),
        test_images=int(metrics["images"]) if metrics.get("images") is not None else None,
        test_metrics={
            name: float(metrics[name])
            for name in TEST_METRICS
            if isinstance(metrics.get(name), int | float)
        },
        intended_use=card.get("intended_use"),
        warning=card.get("warning"),
    )


def review_facts(reviews: list[dict[str, Any]]) -> ReviewFacts:
    current = [review for review in reviews if review.get("is_current", True)]
    return ReviewFacts(
        agreed=sum(review["verdict"] == "agree" for review in current),
        corrections=tuple(
            review["corrected_label"] for review in current if review["verdict"] == "disagree"
        ),
    )


def heatmap_focus(prediction: dict[str, Any]) -> HeatmapFocus | None:
    """The stored prediction's summary of its Grad-CAM map, read as the API documents it."""
    focus = prediction.get("heatmap_focus")
    if focus is None:
        return None
    try:
        return HeatmapFocus.model_validate(focus)
    except ValidationError:
        # A summary of another shape says nothing reliable: explained as if none was kept.
        return None


def failed_checks(prediction: dict[str, Any]) -> tuple[Check, ...]:
    """The stored prediction's failed checks, read as the API documents them."""
    try:
        checks = [Check.model_validate(check) for check in prediction.get("checks") or ()]
    except ValidationError:
        return ()  # checks of another shape say nothing reliable: the reasons still do
    return tuple(check for check in checks if not check.passed)


def facts_from(
    prediction: dict[str, Any],
    reviews: list[dict[str, Any]],
    model_detail: dict[str, Any] | None,
    model_note: str | None = None,
) -> PredictionFacts:
    model = None
    if model_detail:
        try:
            model = model_facts(model_detail["card"])
        except (KeyError, TypeError, ValueError, AttributeError):
            # A card of another shape (older, hand-made) is no reason to refuse the rest.
            model_note = "this model version's card could not be read"
    probability = prediction.get("probability")
    return PredictionFacts(
        label=prediction.get("label"),
        probability=float(probability) if probability is not None else None,
        probabilities={k: float(v) for k, v in prediction["probabilities"].items()},
        threshold=float(prediction["threshold"]),
        model_version=prediction["model_version"],
        model=model,
        model_note=model_note,
        has_heatmap=prediction.get("heatmap_ref") is not None,
        heatmap=heatmap_focus(prediction),
        review=review_facts(reviews),
        assessment=prediction.get("assessment"),
        reasons=tuple(prediction.get("reasons") or ()),
        failed_checks=failed_checks(prediction),
    )


@dataclass(frozen=True)
class Gathered:
    facts: PredictionFacts
    # What must never reach a provider: the patient's reference and the stored ids.
    identifiers: tuple[str, ...]


async def gather_facts(
    downstreams: Downstreams, prediction_id: uuid.UUID, headers: dict[str, str]
) -> Gathered:
    """The facts of one prediction, with the caller's own rights (404 when it is unknown)."""
    answer = await downstreams.call(
        "data", "GET", f"/predictions/{prediction_id}", idempotent=True, headers=headers
    )
    raise_for_answer(answer)
    prediction = answer.json()
    reviews_answer, (model_detail, note), patient_ref = await asyncio.gather(
        downstreams.call(
            "data",
            "GET",
            f"/predictions/{prediction_id}/reviews",
            idempotent=True,
            headers=headers,
        ),
        _model_detail(downstreams, prediction["model_version"], headers),
        _patient_reference(downstreams, prediction.get("patient_id"), headers),
    )
    raise_for_answer(reviews_answer)
    identifiers = [
        *reference_variants(patient_ref),
        *(
            str(value)
            for value in (
                prediction.get("patient_id"),
                prediction.get("image_id"),
                prediction.get("requested_by"),
                prediction.get("heatmap_ref"),
                prediction["id"],
            )
            if value
        ),
    ]
    return Gathered(
        facts_from(prediction, reviews_answer.json(), model_detail, note), tuple(identifiers)
    )


def reference_variants(reference: str | None) -> list[str]:
    """The patient's reference as typed, without its separators, and its parts of three
    characters or more ("MRN-77/Smith": also "MRN77Smith", "MRN", "Smith")."""
    if not reference:
        return []
    parts = [part for part in re.split(r"[^A-Za-z0-9]+", reference) if len(part) >= 3]
    return list(dict.fromkeys([reference, "".join(re.split(r"[^A-Za-z0-9]+", reference)), *parts]))


async def _model_detail(
    downstreams: Downstreams, version: str, headers: dict[str, str]
) -> tuple[dict[str, Any] | None, str | None]:
    """The version's registry entry, or why there is none: the explanation still works
    from the prediction's own facts when the registry cannot be asked."""
    try:
        answer = await downstreams.call(
            "inference", "GET", f"/models/{version}", idempotent=True, headers=headers
        )
    except ServiceError:
        return None, "the model registry could not be reached, so its card is not included"
    if answer.status_code == 404:
        return None, "this model version is no longer registered, so its card is not available"
    if answer.status_code >= 500:
        return None, "the model registry could not be reached, so its card is not included"
    raise_for_answer(answer)
    return answer.json(), None


async def _patient_reference(
    downstreams: Downstreams, patient_id: str | None, headers: dict[str, str]
) -> str | None:
    """The patient's reference, only so that it can be kept out of every prompt."""
    if not patient_id:
        return None
    answer = await downstreams.call(
        "data", "GET", f"/patients/{patient_id}", idempotent=True, headers=headers
    )
    raise_for_answer(answer)
    return answer.json()["external_ref"]
