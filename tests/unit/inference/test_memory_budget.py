"""The memory budget of the images in flight: large images take turns, first come first
served, small ones pass together, a request that waits too long is refused as busy, a
caller that goes away keeps its share until its thread is done; and every upload is
decoded off the event loop. Counted with instrumented fakes, never timed."""

import asyncio
import io
import threading

import numpy as np
import pytest
from PIL import Image

from common.errors import ServiceError
from inference_service.serving import service as serving_module
from inference_service.serving.memory import MemoryBudget, image_cost, in_thread
from inference_service.serving.predictor import ModelOutput, Prediction
from inference_service.serving.service import Serving
from ml.contract import ImageHeader
from tests.support.images import png_bytes, tissue_png
from tests.support.waiting import until

DEADLINE_S = 30
MIB = 1024 * 1024


class Occupants:
    """Tasks that hold the budget until each is let go, in the order they got in."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.inside: list[str] = []
        self.entered: list[str] = []
        self.most = 0
        self.leave: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task] = {}

    def start(self, name: str, cost: int) -> None:
        self.leave[name] = asyncio.Event()

        async def occupy() -> None:
            async with self.budget.hold(cost):
                self.inside.append(name)
                self.entered.append(name)
                self.most = max(self.most, len(self.inside))
                await self.leave[name].wait()
                self.inside.remove(name)

        self.tasks[name] = asyncio.create_task(occupy())

    async def let_go(self, name: str) -> None:
        self.leave[name].set()
        await asyncio.wait_for(self.tasks[name], DEADLINE_S)


async def test_images_that_do_not_fit_together_take_turns():
    budget = MemoryBudget(100, wait_s=DEADLINE_S)
    occupants = Occupants(budget)
    for name in ("a", "b", "c"):
        occupants.start(name, 60)
    await until(lambda: occupants.inside == ["a"] and budget.waiting == 2, "a in, b and c queued")
    for name, following in (("a", "b"), ("b", "c")):
        await occupants.let_go(name)
        await until(lambda f=following: occupants.inside == [f], f"{following} in")
    await occupants.let_go("c")
    assert occupants.most == 1
    assert budget.held == 0 and budget.waiting == 0


async def test_images_that_fit_together_pass_together():
    budget = MemoryBudget(100, wait_s=DEADLINE_S)
    occupants = Occupants(budget)
    for name in ("a", "b", "c"):
        occupants.start(name, 40)
    await until(lambda: len(occupants.inside) == 2 and budget.waiting == 1, "two in")
    assert budget.held == 80
    for name in list(occupants.inside):
        await occupants.let_go(name)
    await until(lambda: occupants.inside == ["c"], "the third in")
    await occupants.let_go("c")
    assert occupants.most == 2


async def first_in_then_large_and_small_queued(small: int) -> tuple[MemoryBudget, Occupants]:
    """ "first" holds 60 of 100; "large" (60) waits, then "small", which would fit."""
    budget = MemoryBudget(100, wait_s=DEADLINE_S)
    occupants = Occupants(budget)
    occupants.start("first", 60)
    await until(lambda: occupants.inside == ["first"], "the first in")
    occupants.start("large", 60)
    occupants.start("small", small)
    await until(lambda: budget.waiting == 2, "both queued")
    return budget, occupants


async def test_a_small_image_does_not_overtake_a_large_one_waiting():
    budget, occupants = await first_in_then_large_and_small_queued(small=10)
    assert occupants.inside == ["first"] and budget.held == 60  # the large one came first
    await occupants.let_go("first")
    await until(lambda: occupants.inside == ["large", "small"], "both in, in order")
    for name in ("large", "small"):
        await occupants.let_go(name)
    assert occupants.entered == ["first", "large", "small"]


async def test_an_image_costing_more_than_the_whole_budget_runs_alone():
    budget = MemoryBudget(100, wait_s=DEADLINE_S)
    occupants = Occupants(budget)
    occupants.start("small", 10)
    await until(lambda: occupants.inside == ["small"], "the small one in")
    occupants.start("huge", 500)
    await until(lambda: budget.waiting == 1, "the huge one queued")
    await occupants.let_go("small")
    await until(lambda: occupants.inside == ["huge"], "the huge one in")
    assert budget.held == 100
    await occupants.let_go("huge")
    assert budget.held == 0


async def test_a_request_that_waits_too_long_is_refused_as_busy():
    budget = MemoryBudget(100, wait_s=0.05)
    occupants = Occupants(budget)
    occupants.start("holder", 100)
    await until(lambda: occupants.inside == ["holder"], "the holder in")
    with pytest.raises(ServiceError) as refused:
        async with budget.hold(10):
            raise AssertionError("admitted while the budget is full")
    assert refused.value.status_code == 503
    assert refused.value.code == "busy"
    assert refused.value.headers == {"Retry-After": "5"}
    assert budget.waiting == 0
    await occupants.let_go("holder")
    assert budget.held == 0


async def test_a_cancelled_waiter_leaves_the_queue_to_the_next():
    budget, occupants = await first_in_then_large_and_small_queued(small=30)
    occupants.tasks["large"].cancel()
    await until(lambda: occupants.inside == ["first", "small"], "the small one in")
    assert budget.waiting == 0 and budget.held == 90
    for name in ("first", "small"):
        await occupants.let_go(name)
    assert budget.held == 0


async def test_a_caller_that_goes_away_keeps_its_share_until_its_thread_is_done():
    budget = MemoryBudget(100, wait_s=DEADLINE_S)
    started, finish = threading.Event(), threading.Event()

    def decode() -> str:
        started.set()
        finish.wait(DEADLINE_S)
        return "decoded"

    async def request() -> str:
        async with budget.hold(60):
            return await in_thread(decode)

    task = asyncio.create_task(request())
    assert await asyncio.to_thread(started.wait, DEADLINE_S), "the thread never started"
    task.cancel()
    for _ in range(5):  # the cancellation reaches the request within the loop's next turns
        await asyncio.sleep(0)
    assert not task.done()
    assert budget.held == 60  # the thread still holds the decoded pixels
    finish.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, DEADLINE_S)
    assert budget.held == 0


def test_the_cost_of_an_image_at_the_pixel_limit_fills_the_default_budget():
    at_limit = ImageHeader("PNG", 6000, 6000, "RGB")
    cost = image_cost(at_limit, heatmap=True, max_side=2048)
    # 36 Mpx decoded at 5 bytes, then 2000 x 2000 kept at 4 bytes and overlaid at 16.
    assert cost == 5 * 36_000_000 + 20 * 2000 * 2000
    assert cost > 256 * MIB // 2  # no two at once in the default 256 MiB
    small = ImageHeader("PNG", 50, 50, "RGB")
    assert image_cost(small, heatmap=False, max_side=2048) == 9 * 2500


# The service around the budget, with a fake model: what is decoded, where and how many at once.


class FakePredictor:
    version = "fake-1"
    size = 16
    threshold = 0.5

    def interpret(self, output: ModelOutput) -> Prediction:
        return Prediction(
            "malignant", output.malignant_probability, {"benign": 0.3, "malignant": 0.7}
        )

    def heatmap(self, malignant_map: np.ndarray, label: str) -> np.ndarray:
        return malignant_map


class FakeHolder:
    async def get(self) -> FakePredictor:
        return FakePredictor()


class FakeBatcher:
    async def predict(self, predictor, inputs, explain=False) -> list[ModelOutput]:
        cam = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4) if explain else None
        return [ModelOutput(0.7, None, cam)] * len(inputs)


class Decodes:
    """Stands in for the decoder: counts decodes in progress and the most at once, notes
    the thread each ran in, and holds each until the test lets one through."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.started = 0
        self.most = 0
        self.threads: list[int] = []
        self.permits = threading.Semaphore(0)
        # What every decode gives: tissue, which the quality checks pass, so the model's
        # answer (and the overlay) follow as for a real upload.
        self.tissue = Image.open(io.BytesIO(tissue_png(1, 64))).convert("RGB")

    def __call__(self, data: bytes, max_pixels: int, max_side: int | None = None) -> Image.Image:
        with self.lock:
            self.inside += 1
            self.started += 1
            self.most = max(self.most, self.inside)
            self.threads.append(threading.get_ident())
        try:
            assert self.permits.acquire(timeout=DEADLINE_S), "never let through"
            return self.tissue.copy()
        finally:
            with self.lock:
                self.inside -= 1


def serving(budget_mib: int = 256) -> Serving:
    return Serving(
        holder=FakeHolder(),  # type: ignore[arg-type]
        batcher=FakeBatcher(),  # type: ignore[arg-type]
        metrics=serving_module.PredictionMetrics(serving_module.CollectorRegistry()),
        max_pixels=40_000_000,
        max_image_side=2048,
        budget=MemoryBudget(budget_mib * MIB, wait_s=DEADLINE_S),
    )


@pytest.fixture(scope="module")
def at_limit_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 6000), (230, 180, 200)).save(buffer, "PNG")  # 120 KB on the wire
    return buffer.getvalue()


@pytest.fixture
def decodes(monkeypatch) -> Decodes:
    fake = Decodes()
    monkeypatch.setattr(serving_module, "decode_upload", fake)
    return fake


async def test_one_image_at_the_pixel_limit_is_decoded_at_a_time(decodes, at_limit_png):
    service = serving()
    requests = [asyncio.create_task(service.predict([at_limit_png], True)) for _ in range(4)]
    for admitted in range(1, 5):
        await until(
            lambda n=admitted: decodes.started == n and service.budget.waiting == 4 - n,
            f"decode {admitted} started, the others waiting",
        )
        assert decodes.inside == 1
        decodes.permits.release()
    results = await asyncio.wait_for(asyncio.gather(*requests), DEADLINE_S)
    assert decodes.most == 1
    assert all(result.heatmap_png_base64 for [result] in results)
    assert service.budget.held == 0


async def test_small_images_are_decoded_together(decodes):
    service = serving()
    images = [png_bytes(seed, size=64) for seed in range(4)]
    batch = asyncio.create_task(service.predict(images, True))
    await until(lambda: decodes.inside == 4, "four small decodes at once")
    decodes.permits.release(4)
    results = await asyncio.wait_for(batch, DEADLINE_S)
    assert [result.label for result in results] == ["malignant"] * 4


async def test_every_upload_is_decoded_off_the_event_loop(decodes):
    service = serving()
    decodes.permits.release()
    [result] = await service.predict([png_bytes(1, size=24)])  # 24 x 24, 1 KB
    assert result.probability == 0.7
    assert decodes.threads and threading.get_ident() not in decodes.threads
