"""One prediction request, start to end: decode, preprocess (`ml.contract`), batch,
interpret, and the Grad-CAM overlay when asked."""

import asyncio
import base64
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from common.uploads import decode_upload
from inference_service.serving.batcher import Batcher
from inference_service.serving.holder import ModelHolder
from inference_service.serving.predictor import heatmap_focus, overlay_png
from inference_service.serving.schemas import PredictionOut
from ml.contract import preprocess_image

INLINE_DECODE_BYTES = 256 * 1024


class PredictionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.predictions = Counter(
            "inference_predictions",
            "Predictions by label and model version.",
            ["label", "model_version"],
            registry=registry,
        )


@dataclass
class Serving:
    """What the prediction routes need, built once per process (`app.state.serving`)."""

    holder: ModelHolder
    batcher: Batcher
    metrics: PredictionMetrics
    max_pixels: int

    async def predict(self, uploads: list[bytes], heatmap: bool = False) -> list[PredictionOut]:
        started = time.perf_counter()
        predictor = await self.holder.get()  # every image of the request: one version

        def prepare() -> tuple[list, list]:
            images = [decode_upload(data, self.max_pixels) for data in uploads]
            return images, [preprocess_image(image, predictor.size) for image in images]

        # A small upload decodes faster than a hop to a worker thread; a large one would
        # hold up every other request, so it goes to a thread.
        if sum(len(data) for data in uploads) <= INLINE_DECODE_BYTES:
            images, inputs = prepare()
        else:
            images, inputs = await asyncio.to_thread(prepare)
        probabilities = await self.batcher.predict(predictor, inputs)
        results = []
        for image, model_input, probability in zip(images, inputs, probabilities, strict=True):
            prediction = predictor.interpret(probability)
            overlay = focus = None
            if heatmap:
                cam = await asyncio.to_thread(predictor.heatmap, model_input, prediction.label)
                png = await asyncio.to_thread(overlay_png, image, cam)
                overlay = base64.b64encode(png).decode()
                focus = heatmap_focus(cam)
            self.metrics.predictions.labels(prediction.label, predictor.version).inc()
            results.append(
                PredictionOut(
                    label=prediction.label,
                    probability=round(prediction.probability, 6),
                    probabilities={k: round(v, 6) for k, v in prediction.probabilities.items()},
                    model_version=predictor.version,
                    threshold=predictor.threshold,
                    latency_ms=0.0,
                    heatmap_png_base64=overlay,
                    heatmap_focus=focus,
                )
            )
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        for result in results:
            result.latency_ms = latency_ms
        return results
