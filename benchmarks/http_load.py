"""Closed-loop HTTP load for the benchmarks: N clients, each sending its next request as soon
as the last one is answered, for a fixed time."""

import asyncio
import itertools
import statistics
import time
from collections.abc import Callable

import httpx

# Requests sent before the timed part (model loaded, connections open).
WARM_UP_REQUESTS = 5


async def load(
    url: str,
    headers: dict,
    image: bytes | list[bytes] | None,
    clients: int,
    seconds: float,
    params: dict | None = None,
    ok: tuple[int, ...] = (200,),
    counts: Callable[[httpx.Response], bool] | None = None,
    content_type: str = "image/png",
    images_per_request: int = 1,
) -> dict:
    """`clients` concurrent loops POSTing `image` to `url` (or GETting it when no image); a
    list of images is sent in turn, each once, so nothing downstream is a repeat. With
    `counts`, the figures say how many answers it was true of (`counted`). A body that holds
    several images (a .npy batch) counts as `images_per_request` in `images_per_s`."""
    images = itertools.cycle([image] if isinstance(image, bytes) else image or [None])
    latencies: list[float] = []
    counted = 0
    failures = 0
    last_failure = ""
    deadline = 0.0  # set once the warm-up is over, however long that took

    def send(client: httpx.AsyncClient):
        body = next(images)
        if body is None:
            return client.get(url, headers=headers, params=params)
        return client.post(
            url, content=body, params=params, headers={**headers, "Content-Type": content_type}
        )

    async def client_loop(client: httpx.AsyncClient):
        nonlocal counted, failures, last_failure
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await send(client)
            if response.status_code in ok:
                latencies.append(time.perf_counter() - started)
                counted += bool(counts and counts(response))
            else:
                failures += 1
                last_failure = f"{response.status_code} {response.text[:200]}"

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for _ in range(WARM_UP_REQUESTS):
            await send(client)
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        elapsed = time.monotonic() - started
    if not latencies:
        raise RuntimeError(f"every request to {url} failed; the last: {last_failure}")
    return {
        "clients": clients,
        "requests": len(latencies),
        "failures": failures,
        "images_per_s": round(len(latencies) * images_per_request / elapsed, 1),
        "median_ms": round(statistics.median(latencies) * 1000, 3),
        "p95_ms": round(sorted(latencies)[int(0.95 * len(latencies))] * 1000, 3),
        **({"counted": counted} if counts else {}),
    }
