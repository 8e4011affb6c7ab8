"""One prediction request, start to end: decode, preprocess (`ml.contract`), batch,
interpret, and the Grad-CAM overlay when asked.

Each image is decoded in a worker thread (a small file can hold a large image), reduced to
at most `max_image_side` pixels on its longest side, and from its header to its overlay it
holds its estimated memory against the process's budget (`memory.MemoryBudget`)."""

import asyncio
import base64
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from prometheus_client import CollectorRegistry, Counter

from common.uploads import decode_upload, read_upload_header
from inference_service.serving.batcher import Batcher
from inference_service.serving.holder import ModelHolder
from inference_service.serving.memory import MemoryBudget, image_cost, in_thread
from inference_service.serving.predictor import (
    Predictor,
    heatmap_focus,
    overlay_png,
)
from inference_service.serving.schemas import (
    CheckOut,
    GradcamOut,
    HeatmapFocusOut,
    PatchBatchOut,
    PatchOut,
    PredictionOut,
)
from ml.assessment import Check, Outcome, Policy, Reason, assess
from ml.contract import ImageHeader, preprocess_image
from ml.quality import QualityLimits, quality_checks


class PredictionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.predictions = Counter(
            "inference_predictions",
            "Predictions by label and model version.",
            ["label", "model_version"],
            registry=registry,
        )
        self.assessments = Counter(
            "inference_assessments",
            "Predictions by assessment (assessable, indeterminate, not_assessable).",
            ["assessment"],
            registry=registry,
        )
        self.assessment_reasons = Counter(
            "inference_assessment_reasons",
            "Failed checks by reason, refusing or warning.",
            ["reason"],
            registry=registry,
        )

    def count(self, outcome: Outcome, label: str | None, model_version: str) -> None:
        self.predictions.labels(label or "none", model_version).inc()
        self.assessments.labels(outcome.assessment.value).inc()
        for reason in outcome.reasons:
            self.assessment_reasons.labels(reason.value).inc()


# What a patch of a .npy batch holds while it is assessed, per byte of the patch: its float
# copy when resized, the quality checks' working arrays.
PATCH_BYTES_FACTOR = 8


def site_policies(warn_only: Sequence[str]) -> dict[Reason, Policy]:
    """The site's policy per reason: those named only warn, every other refuses."""
    return {Reason(reason): "warn" for reason in warn_only}


def model_inputs(patches: np.ndarray, size: int) -> np.ndarray:
    """The model input of each patch: `preprocess_image`'s, at once when no resizing is needed."""
    if patches.shape[1:3] == (size, size):
        return patches.astype(np.float32) / 255.0
    return np.stack([preprocess_image(Image.fromarray(patch), size) for patch in patches])


def gradcam_out(cam: np.ndarray) -> GradcamOut:
    """A map in [0, 1] as uint8 bytes, base64."""
    data = np.round(np.clip(cam, 0, 1) * 255).astype(np.uint8)
    rows, columns = data.shape
    return GradcamOut(shape=(rows, columns), data_base64=base64.b64encode(data).decode())


def explain(
    predictor: Predictor, image: Image.Image, malignant_map: np.ndarray, label: str
) -> tuple[str, HeatmapFocusOut]:
    """The Grad-CAM overlay toward `label` (PNG, base64) and where its map concentrates."""
    cam = predictor.heatmap(malignant_map, label)
    return base64.b64encode(overlay_png(image, cam)).decode(), heatmap_focus(cam)


@dataclass
class Serving:
    """What the prediction routes need, built once per process (`app.state.serving`)."""

    holder: ModelHolder
    batcher: Batcher
    metrics: PredictionMetrics
    max_pixels: int
    max_image_side: int
    budget: MemoryBudget
    # The site's policy per reason; a reason missing refuses (`ml.assessment.assess`).
    policies: Mapping[Reason, Policy] = field(default_factory=dict)
    quality_limits: QualityLimits = field(default_factory=QualityLimits)

    def prepare(self, data: bytes, size: int) -> tuple[Image.Image, np.ndarray, list[Check]]:
        """The decoded (bounded) image, its model input and its quality checks."""
        image = decode_upload(data, self.max_pixels, self.max_image_side)
        return image, preprocess_image(image, size), quality_checks(image, self.quality_limits)

    async def predict(self, uploads: list[bytes], heatmap: bool = False) -> list[PredictionOut]:
        started = time.perf_counter()
        predictor = await self.holder.get()  # every image of the request: one version
        # Every header first, in order: the first bad file is the answer, before any decoding.
        headers = await in_thread(
            lambda: [read_upload_header(data, self.max_pixels) for data in uploads]
        )
        outcomes = await asyncio.gather(
            *(
                self._assess(predictor, data, header, heatmap)
                for data, header in zip(uploads, headers, strict=True)
            ),
            return_exceptions=True,
        )
        results = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            results.append(outcome)
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        for result in results:
            result.latency_ms = latency_ms
        return results

    async def _assess(
        self, predictor: Predictor, data: bytes, header: ImageHeader, heatmap: bool
    ) -> PredictionOut:
        async with self.budget.hold(image_cost(header, heatmap, self.max_image_side)):
            image, model_input, image_checks = await in_thread(self.prepare, data, predictor.size)
            # No overlay without a verdict: a map toward a label the answer withholds would
            # read as one. The model's own checks never withhold it (indeterminate at worst),
            # so an image its quality refuses is spared the gradient pass.
            explains = heatmap and assess(image_checks, self.policies).gives_label
            [output] = await self.batcher.predict(predictor, [model_input], explains)
            prediction = predictor.interpret(output)
            outcome = assess([*image_checks, *prediction.checks], self.policies)
            label = prediction.label if outcome.gives_label else None
            overlay = focus = None
            if label is not None and output.malignant_map is not None:
                overlay, focus = await in_thread(
                    explain, predictor, image, output.malignant_map, prediction.label
                )
        self.metrics.count(outcome, label, predictor.version)
        return PredictionOut(
            assessment=outcome.assessment,
            reasons=list(outcome.reasons),
            checks=[CheckOut.model_validate(check.as_dict()) for check in outcome.checks],
            label=label,
            probability=None if label is None else round(prediction.probability, 6),
            probabilities={k: round(v, 6) for k, v in prediction.probabilities.items()},
            model_version=predictor.version,
            threshold=predictor.threshold,
            latency_ms=0.0,
            heatmap_png_base64=overlay,
            heatmap_focus=focus,
        )

    def prepare_patches(
        self, patches: np.ndarray, size: int, quality: bool
    ) -> tuple[np.ndarray, list[list[Check]]]:
        """The patches' model inputs and, when `quality`, each one's quality checks."""
        checks = [
            quality_checks(patch, self.quality_limits) if quality else [] for patch in patches
        ]
        return model_inputs(patches, size), checks

    async def predict_patches(
        self, patches: np.ndarray, heatmap: bool = False, quality: bool = True
    ) -> PatchBatchOut:
        """Each (height, width, 3) uint8 patch assessed as one image would be: the quality
        checks (unless `quality` is off, for a caller that has checked its patches), the
        model in shared batches, and with `heatmap` its Grad-CAM map, not an overlay."""
        started = time.perf_counter()
        predictor = await self.holder.get()
        size = predictor.size
        cost = PATCH_BYTES_FACTOR * patches.nbytes + len(patches) * size * size * 3 * 4
        async with self.budget.hold(cost):
            inputs, checks = await in_thread(self.prepare_patches, patches, size, quality)
            explains = [heatmap and assess(c, self.policies).gives_label for c in checks]
            outputs = await self.batcher.predict(predictor, list(inputs), explains)
        items = []
        for output, image_checks in zip(outputs, checks, strict=True):
            prediction = predictor.interpret(output)
            outcome = assess([*image_checks, *prediction.checks], self.policies)
            label = prediction.label if outcome.gives_label else None
            gradcam = None
            if label is not None and output.malignant_map is not None:
                gradcam = gradcam_out(predictor.heatmap(output.malignant_map, label))
            self.metrics.count(outcome, label, predictor.version)
            items.append(
                PatchOut(
                    assessment=outcome.assessment,
                    reasons=list(outcome.reasons),
                    label=label,
                    probability=None if label is None else round(prediction.probability, 6),
                    malignant_probability=round(prediction.probabilities[predictor.classes[1]], 6),
                    gradcam=gradcam,
                )
            )
        return PatchBatchOut(
            model_version=predictor.version,
            threshold=predictor.threshold,
            quality_checked=quality,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
            items=items,
        )
