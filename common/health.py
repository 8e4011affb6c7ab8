"""`/health` (the process answers) and `/ready` (its dependencies answer) for every service.

A service registers readiness checks on `app.state.readiness_checks`: async callables that
return an optional detail string when the dependency is usable and raise when it is not.

Why a check failed (exception text, addresses, a downstream's own reason) always goes to the
log, at WARNING with the request id. The answer carries it only on internal services, where
the gateway reads it for its own log; a public service (`app.state.readiness_public`, the
gateway) answers each check's name, status and latency and nothing else.

One run of the checks is shared: callers arriving while it is under way await that same run,
and its result is reused for `app.state.readiness_cache_s`, so a flood of `/ready` calls
reaches the dependencies at most once per interval.
"""

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from common.logging import current_request_id

ReadinessCheck = Callable[[], Awaitable[str | None]]
Results = dict[str, dict[str, Any]]

logger = logging.getLogger("readiness")

router = APIRouter(tags=["operations"])


class NotReady(Exception):
    """Raised by a readiness check whose message already says, for people, what is wrong."""


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, NotReady):
        return str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def run_check(name: str, check: ReadinessCheck, timeout_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout=timeout_s)
    except Exception as exc:
        reason = describe_failure(exc)
        request_id = current_request_id() or "-"
        logger.warning(
            "readiness check %s is down: %s",
            name,
            reason,
            extra={"check": name, "reason": reason, "request_id": request_id},
        )
        return {"status": "down", "reason": reason}
    result: dict[str, Any] = {
        "status": "up",
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if detail:
        result["detail"] = detail
    return result


async def run_checks(checks: dict[str, ReadinessCheck], timeout_s: float) -> Results:
    names = list(checks)
    results = await asyncio.gather(*(run_check(name, checks[name], timeout_s) for name in names))
    return dict(zip(names, results, strict=True))


class ReadinessCache:
    """The last result of the checks, reused for `ttl_s` after it was taken; while a run is
    under way every caller awaits that one run (no thundering herd on the dependencies)."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._result: Results | None = None
        self._taken_at = -math.inf
        self._running: asyncio.Task[Results] | None = None

    async def get(self, run: Callable[[], Awaitable[Results]]) -> Results:
        if self._result is not None and self.clock() - self._taken_at < self.ttl_s:
            return self._result
        if self._running is None:
            self._running = asyncio.create_task(self._refresh(run))
        # Shielded: a caller hanging up must not cancel the run the others are waiting for.
        return await asyncio.shield(self._running)

    async def _refresh(self, run: Callable[[], Awaitable[Results]]) -> Results:
        try:
            result = await run()
            self._result, self._taken_at = result, self.clock()
            return result
        finally:
            self._running = None


def public_view(results: Results) -> Results:
    """Each check's name, status and latency: no reason, no detail."""
    return {
        name: {key: value for key, value in result.items() if key in ("status", "latency_ms")}
        for name, result in results.items()
    }


@router.get("/health", summary="The process is up")
async def health(request: Request) -> dict[str, str]:
    return {"status": "ok", "service": request.app.state.service_name}


@router.get(
    "/ready",
    summary="Every dependency of the service answers",
    responses={503: {"description": "A dependency is down; `checks` says which"}},
)
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    checks: dict[str, ReadinessCheck] = state.readiness_checks
    timeout_s: float = state.readiness_timeout_s
    results = await state.readiness_cache.get(lambda: run_checks(checks, timeout_s))
    if state.readiness_public:
        results = public_view(results)
    body: dict[str, Any] = {"service": state.service_name, "checks": results}
    down = {name: r for name, r in results.items() if r["status"] != "up"}
    request_id = current_request_id() or "-"
    if not down:
        return JSONResponse({"status": "ready", **body})
    reasons = "; ".join(f"{name}: {r.get('reason', r['status'])}" for name, r in down.items())
    body["status"] = "not_ready"
    # The error envelope, so clients treat it like every other failure, plus the per-check detail.
    body["error"] = {
        "code": "not_ready",
        "message": f"Not ready: {reasons}",
        "request_id": request_id,
    }
    return JSONResponse(body, status_code=503)
