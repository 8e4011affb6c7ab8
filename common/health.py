"""`/health` (the process answers) and `/ready` (its dependencies answer) for every service.

A service registers readiness checks on `app.state.readiness_checks`: async callables that
return an optional detail string when the dependency is usable and raise when it is not.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from common.logging import current_request_id

ReadinessCheck = Callable[[], Awaitable[str | None]]

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


async def run_check(check: ReadinessCheck, timeout_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout=timeout_s)
    except Exception as exc:
        return {"status": "down", "reason": describe_failure(exc)}
    result: dict[str, Any] = {
        "status": "up",
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if detail:
        result["detail"] = detail
    return result


async def run_checks(checks: dict[str, ReadinessCheck], timeout_s: float) -> dict[str, Any]:
    names = list(checks)
    results = await asyncio.gather(*(run_check(checks[name], timeout_s) for name in names))
    return dict(zip(names, results, strict=True))


@router.get("/health", summary="The process is up")
async def health(request: Request) -> dict[str, str]:
    return {"status": "ok", "service": request.app.state.service_name}


@router.get(
    "/ready",
    summary="Every dependency of the service answers",
    responses={503: {"description": "A dependency is down; `checks` says which and why"}},
)
async def ready(request: Request) -> JSONResponse:
    checks: dict[str, ReadinessCheck] = request.app.state.readiness_checks
    timeout_s: float = request.app.state.readiness_timeout_s
    results = await run_checks(checks, timeout_s)
    body: dict[str, Any] = {"service": request.app.state.service_name, "checks": results}
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
