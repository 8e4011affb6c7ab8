"""How the service turns the model's checks into the answer: the assessment, the reasons,
the label kept or withheld, the site's policies, and the counters."""

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from inference_service.serving.memory import MemoryBudget
from inference_service.serving.predictor import ModelOutput, Prediction
from inference_service.serving.service import PredictionMetrics, Serving, site_policies
from inference_service.settings import InferenceSettings
from ml.assessment import Reason, band_check, ood_check
from ml.quality import measure_quality
from tests.support.images import png_bytes, tissue_png

QUALITY_MEASURES = tuple(measure_quality(np.full((8, 8, 3), 255, np.uint8)))

THRESHOLD = 0.4


class CheckingPredictor:
    """The model's checks as a Predictor gives them: the OOD score from the model output,
    the band around the threshold on the probability."""

    version = "fake-2"
    size = 16
    threshold = THRESHOLD

    def interpret(self, output: ModelOutput) -> Prediction:
        p = output.malignant_probability
        label = "malignant" if p >= THRESHOLD else "benign"
        probabilities = {"benign": 1 - p, "malignant": p}
        checks = (ood_check(output.ood_score, 10.0), band_check(p, THRESHOLD, 0.05))
        return Prediction(label, probabilities[label], probabilities, tuple(c for c in checks if c))

    def heatmap(self, malignant_map: np.ndarray, label: str) -> np.ndarray:
        return np.clip(malignant_map if label == "malignant" else -malignant_map, 0, 1)


class Holder:
    async def get(self) -> CheckingPredictor:
        return CheckingPredictor()


# A signed Grad-CAM map toward malignant: hot in the upper left, cold in the lower right.
SIGNED_MAP = np.array([[1.0, 0.5], [0.0, -1.0]], np.float32)


class FixedBatcher:
    """The model's answer is fixed; notes whether each call asked for Grad-CAM."""

    def __init__(self, output: ModelOutput) -> None:
        self.output = output
        self.explained: list[bool] = []

    async def predict(self, predictor, inputs, explain=False) -> list[ModelOutput]:
        self.explained.append(explain)
        output = self.output
        if explain:
            output = ModelOutput(output.malignant_probability, output.ood_score, SIGNED_MAP)
        return [output] * len(inputs)


def serving(
    output: ModelOutput,
    warn_only: list[str] | None = None,
    registry: CollectorRegistry | None = None,
) -> Serving:
    return Serving(
        holder=Holder(),  # type: ignore[arg-type]
        batcher=FixedBatcher(output),  # type: ignore[arg-type]
        metrics=PredictionMetrics(registry or CollectorRegistry()),
        max_pixels=40_000_000,
        max_image_side=2048,
        budget=MemoryBudget(64 * 1024 * 1024, wait_s=60),
        policies=site_policies(warn_only or []),
    )


async def answer(service: Serving, image: bytes | None = None):
    """The answer for synthetic tissue, which passes every quality check (or for `image`)."""
    [result] = await service.predict([image or tissue_png(1, size=64)])
    return result


def model_checks(result) -> list:
    """The model's own checks: they follow the image's quality checks."""
    return [c for c in result.checks if c.measure not in QUALITY_MEASURES]


async def test_a_failed_quality_check_refuses_a_verdict_even_when_the_model_is_sure():
    result = await answer(serving(ModelOutput(0.99, ood_score=1.0)), png_bytes(1, size=64))
    assert result.assessment == "not_assessable" and "not_h_and_e" in result.reasons
    assert (result.label, result.probability) == (None, None)
    assert result.probabilities["malignant"] == pytest.approx(0.99)  # kept for audit
    assert [c.measure for c in result.checks[: len(QUALITY_MEASURES)]] == list(QUALITY_MEASURES)


async def test_an_image_the_model_is_sure_of_is_assessable_with_both_checks_passed():
    result = await answer(serving(ModelOutput(0.9, ood_score=3.0)))
    assert result.assessment == "assessable" and result.reasons == []
    assert [(c.measure, c.passed) for c in model_checks(result)] == [
        ("out_of_distribution_score", True),
        ("distance_from_threshold", True),
    ]
    assert model_checks(result)[1].value == pytest.approx(0.5)
    assert result.label == "malignant" and result.probability == pytest.approx(0.9)


async def test_unlike_the_training_data_and_near_the_threshold_is_indeterminate_with_a_label():
    result = await answer(serving(ModelOutput(0.42, ood_score=25.0)))
    assert result.assessment == "indeterminate"
    assert result.reasons == [Reason.OUT_OF_DISTRIBUTION, Reason.NEAR_THRESHOLD]
    assert result.label == "malignant" and result.probability == pytest.approx(0.42)
    assert result.probabilities == {"benign": pytest.approx(0.58), "malignant": 0.42}
    assert model_checks(result)[0].model_dump() == {
        "measure": "out_of_distribution_score",
        "value": 25.0,
        "limit": 10.0,
        "comparison": "at_most",
        "reason": "out_of_distribution",
        "passed": False,
    }


async def test_a_site_that_only_warns_gets_an_assessable_answer_that_still_names_the_reason():
    service = serving(ModelOutput(0.1, ood_score=25.0), warn_only=["out_of_distribution"])
    result = await answer(service)
    assert result.assessment == "assessable" and result.reasons == ["out_of_distribution"]
    assert result.label == "benign"


async def test_a_version_without_statistics_leaves_the_ood_check_out():
    result = await answer(serving(ModelOutput(0.41, ood_score=None)))
    assert [c.measure for c in model_checks(result)] == ["distance_from_threshold"]
    assert result.assessment == "indeterminate" and result.reasons == ["near_threshold"]


async def test_the_counters_count_assessments_and_reasons():
    registry = CollectorRegistry()
    service = serving(ModelOutput(0.42, ood_score=25.0), registry=registry)
    for _ in range(3):
        await answer(service)
    service.batcher = FixedBatcher(ModelOutput(0.9, ood_score=1.0))  # type: ignore[assignment]
    await answer(service)
    text = generate_latest(registry).decode()
    assert 'inference_assessments_total{assessment="indeterminate"} 3.0' in text
    assert 'inference_assessments_total{assessment="assessable"} 1.0' in text
    assert 'inference_assessment_reasons_total{reason="out_of_distribution"} 3.0' in text
    assert 'inference_assessment_reasons_total{reason="near_threshold"} 3.0' in text
    assert 'inference_predictions_total{label="malignant",model_version="fake-2"} 4.0' in text


async def test_only_an_image_that_gets_a_label_is_sent_through_the_gradient_pass():
    service = serving(ModelOutput(0.9, ood_score=25.0))
    [refused] = await service.predict([png_bytes(1, size=64)], heatmap=True)
    [indeterminate] = await service.predict([tissue_png(1, size=64)], heatmap=True)
    [plain] = await service.predict([tissue_png(2, size=64)])
    assert service.batcher.explained == [False, True, False]  # type: ignore[attr-defined]
    assert refused.assessment == "not_assessable" and refused.heatmap_png_base64 is None
    assert indeterminate.assessment == "indeterminate" and indeterminate.label == "malignant"
    assert indeterminate.heatmap_png_base64 is not None
    assert indeterminate.heatmap_focus is not None
    assert indeterminate.heatmap_focus.peak_region == "upper left"
    assert plain.heatmap_png_base64 is None and plain.heatmap_focus is None


async def test_a_benign_answer_shows_the_map_toward_benign():
    service = serving(ModelOutput(0.05, ood_score=1.0))
    [result] = await service.predict([tissue_png(1, size=64)], heatmap=True)
    assert result.label == "benign" and result.heatmap_focus is not None
    # Toward benign the signed map is negated: the lower right is the hot cell.
    assert result.heatmap_focus.peak_region == "lower right"


def test_the_warn_only_setting_takes_reason_codes_from_the_environment(monkeypatch):
    monkeypatch.setenv("INFERENCE_ASSESSMENT_WARN_ONLY", '["near_threshold", "no_tissue"]')
    settings = InferenceSettings()
    assert settings.assessment_warn_only == ["near_threshold", "no_tissue"]
    assert site_policies(settings.assessment_warn_only) == {
        Reason.NEAR_THRESHOLD: "warn",
        Reason.NO_TISSUE: "warn",
    }
    assert (
        InferenceSettings.model_fields["assessment_warn_only"].get_default(
            call_default_factory=True
        )
        == []
    )


def test_an_unknown_reason_code_in_the_setting_is_refused_at_start():
    with pytest.raises(ValidationError, match="Input should be 'no_tissue'"):
        InferenceSettings(assessment_warn_only=["out_of_distribution", "looks_odd"])
