"""How much memory the images in flight may take: each image's cost is estimated from its
header before anything is decoded, and held against one budget until its overlay is made.

A 116 KiB PNG of 6000 x 6000 pixels decodes to 144 MB (Pillow keeps RGB at 4 bytes a
pixel); with a full-size float overlay, one such request grew the process by 2.2 GiB and
eight at once by 12 GiB (benchmarks/inference_memory.py), past its 2 GiB limit. With the
budget, large images take their turn, first come first
served (a large image is not passed over forever by a stream of small ones), and a request
that waits longer than `wait_s` is answered 503 instead of hanging.
"""

import asyncio
import ctypes
import ctypes.util
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from common.errors import ServiceError
from ml.contract import ImageHeader, reduction_factor

T = TypeVar("T")

logger = logging.getLogger("inference_service.serving")

# Bytes a pixel of the full-size image costs while it is decoded: 4 for RGB, RGBA and
# grey with alpha as Pillow keeps them, 5 for a palette or 1-bit image (1, then 4 as RGB).
DECODE_BYTES_PER_PIXEL = 5
# Bytes a pixel of the reduced image costs from its decoding to the end of the request:
# the image itself (4), and with the overlay its coloured map, the blend, the PNG and its
# base64 text. An upper estimate: a 6000 x 6000 PNG with its overlay is counted as
# 248 MiB, and benchmarks/inference_memory.py measured 168 MiB above idle.
KEPT_BYTES_PER_PIXEL = 4
OVERLAY_BYTES_PER_PIXEL = 16
# What a request refused as busy is told to wait before trying again.
RETRY_AFTER_S = 5


def image_cost(header: ImageHeader, heatmap: bool, max_side: int) -> int:
    """Bytes the image will take at most, from its header: the full-size decode (a JPEG is
    counted at full size too, though it decodes smaller), then the reduced image and its
    overlay."""
    factor = reduction_factor(header.width, header.height, max_side)
    kept = math.ceil(header.width / factor) * math.ceil(header.height / factor)
    per_kept_pixel = KEPT_BYTES_PER_PIXEL + (OVERLAY_BYTES_PER_PIXEL if heatmap else 0)
    return DECODE_BYTES_PER_PIXEL * header.width * header.height + per_kept_pixel * kept


class Busy(ServiceError):
    def __init__(self) -> None:
        super().__init__(
            503,
            "The service is busy with other large images; try again in a few seconds.",
            code="busy",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


class MemoryBudget:
    """At most `capacity` bytes held at once; `hold(n)` waits its turn without blocking the
    event loop. An image costing more than the whole budget is held as the whole budget: it
    runs alone."""

    def __init__(self, capacity: int, wait_s: float) -> None:
        self.capacity = capacity
        self.wait_s = wait_s
        self.held = 0
        self._queue: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @asynccontextmanager
    async def hold(self, cost: int) -> AsyncIterator[None]:
        amount = min(cost, self.capacity)
        await self._acquire(amount)
        try:
            yield
        finally:
            self.held -= amount
            self._grant()

    async def _acquire(self, amount: int) -> None:
        if not self._queue and self.held + amount <= self.capacity:
            self.held += amount
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (amount, turn)
        self._queue.append(entry)
        try:
            async with asyncio.timeout(self.wait_s):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self.held -= amount  # granted just as the wait ended: give it back
            elif entry in self._queue:
                self._queue.remove(entry)
            self._grant()  # this one may have been at the head of the queue
            if isinstance(exc, TimeoutError):
                raise Busy() from exc
            raise

    def _grant(self) -> None:
        while self._queue:
            amount, turn = self._queue[0]
            if turn.cancelled():  # its waiter was cancelled and has not run since
                self._queue.popleft()
                continue
            if self.held + amount > self.capacity:
                return
            self._queue.popleft()
            self.held += amount
            turn.set_result(None)


# glibc's `mallopt` parameter, and the size from which memory is mapped on its own.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1024 * 1024


def return_freed_images_to_the_system() -> bool:
    """Have glibc map every block of 1 MiB or more on its own, so that freeing it gives it
    back to the system. By default the threshold rises with use (up to 32 MiB), and blocks
    below it stay in the arena of the worker thread that freed them: measured, eight large
    images in turn kept 1 GiB resident across six worker threads, against 170 MiB for one;
    with this, 174 MiB. False where the C library has no `mallopt` (not glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        done = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        done = False
    if not done:
        logger.warning("cannot set the allocator's mmap threshold; freed images may stay resident")
    return done


async def in_thread(function: Callable[..., T], *args: object) -> T:
    """`function(*args)` in a worker thread. A caller cancelled meanwhile (its client went
    away) still waits for the thread to finish, so that the memory the thread holds stays
    counted in the budget until it is really freed."""
    work = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise
