"""Waiting, inside one event loop, for what other tasks on it do."""

import asyncio
from collections.abc import Callable

DEADLINE_S = 30.0  # generous: only the loop's own turns are awaited, on any machine


async def until(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    """Let the event loop run until `condition` holds; fail naming `what` at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"waited {deadline_s:.0f} s for {what}")
        await asyncio.sleep(0.001)


class HeldCheck:
    """A readiness check that counts its runs and holds each until `release` is set, and
    counts the `/ready` calls that reached a readiness cache (`count_arrivals`)."""

    def __init__(self) -> None:
        self.runs = 0
        self.arrived = 0
        self.release = asyncio.Event()

    async def __call__(self) -> None:
        self.runs += 1
        await self.release.wait()

    def count_arrivals(self, cache) -> None:
        get = cache.get

        async def arriving(run):
            self.arrived += 1
            return await get(run)

        cache.get = arriving
