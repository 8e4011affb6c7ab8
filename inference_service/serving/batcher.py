"""Dynamic batching: concurrent predictions are gathered into one model call, up to
`max_size` images or `max_wait_s` after the first arrived, whichever comes first. When the
last call took a single image (no load), the next goes at once instead of waiting.

An image may ask to be explained (Grad-CAM): a batch then makes at most two model calls, one
`Predictor.explain` for those that ask and one `Predictor.predict` for the rest."""

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry, Gauge, Histogram

from inference_service.serving.predictor import ModelOutput, Predictor


class BatchMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # kind: predict (the probability alone) or explain (with Grad-CAM).
        self.batch_size = Histogram(
            "inference_batch_size",
            "Images per model call.",
            ["kind"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )
        self.model_seconds = Histogram(
            "inference_model_call_seconds",
            "Duration of one batched model call.",
            ["kind"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.queue_depth = Gauge(
            "inference_queue_depth", "Images waiting for a model call.", registry=registry
        )


@dataclass
class _Item:
    image: np.ndarray
    predictor: Predictor
    explain: bool
    future: asyncio.Future = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Batcher:
    def __init__(self, max_size: int, max_wait_s: float, metrics: BatchMetrics) -> None:
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.metrics = metrics
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._carry: _Item | None = None  # first item of the next batch (another model)
        # Waiting for company only pays under load: a lone client would wait for nobody.
        self._last_batch_size = 0

    async def predict(
        self,
        predictor: Predictor,
        images: Sequence[np.ndarray],
        explain: bool | Sequence[bool] = False,
    ) -> list[ModelOutput]:
        """The model output of each image (P(malignant), the out-of-distribution score and,
        when `explain` (for all, or per image), the signed Grad-CAM map) by `predictor`,
        batched with whatever else is waiting."""
        explains = [explain] * len(images) if isinstance(explain, bool) else list(explain)
        items = [
            _Item(image, predictor, explains_one)
            for image, explains_one in zip(images, explains, strict=True)
        ]
        for item in items:
            self.queue.put_nowait(item)
        self.metrics.queue_depth.set(self.queue.qsize())
        return list(await asyncio.gather(*(item.future for item in items)))

    async def _next_batch(self) -> list[_Item]:
        first = self._carry or await self.queue.get()
        self._carry = None
        batch = [first]
        busy = self._last_batch_size > 1 or not self.queue.empty()
        deadline = time.monotonic() + (self.max_wait_s if busy else 0.0)
        while len(batch) < self.max_size:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            if item.predictor is not first.predictor:  # a model swap: it starts the next batch
                self._carry = item
                break
            batch.append(item)
        self.metrics.queue_depth.set(self.queue.qsize())
        self._last_batch_size = len(batch)
        return batch

    async def run(self) -> None:
        while True:
            batch = await self._next_batch()
            live = [item for item in batch if not item.future.done()]  # callers may be gone
            if live:
                await self._call(live)

    async def _call(self, items: list[_Item]) -> None:
        predictor = items[0].predictor
        groups = [
            (kind, [item for item in items if item.explain == explains])
            for kind, explains in (("explain", True), ("predict", False))
        ]
        groups = [(kind, group) for kind, group in groups if group]

        def call_model() -> list[tuple[str, list[ModelOutput], float]]:
            # Both calls in one trip to the thread pool.
            answers = []
            for kind, group in groups:
                started = time.perf_counter()
                stacked = np.stack([item.image for item in group])
                run = predictor.explain if kind == "explain" else predictor.predict
                answers.append((kind, run(stacked), time.perf_counter() - started))
            return answers

        try:
            answers = await asyncio.to_thread(call_model)
        except Exception as exc:
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        for (kind, group), (_, outputs, seconds) in zip(groups, answers, strict=True):
            self.metrics.model_seconds.labels(kind).observe(seconds)
            self.metrics.batch_size.labels(kind).observe(len(group))
            for item, output in zip(group, outputs, strict=True):
                if not item.future.done():
                    item.future.set_result(output)
