"""What the assistant's text processing costs on hostile input, before and after the
redaction patterns were made linear.

Two measurements, both against a baseline from the same run:

- **Redaction time.** `gateway.assistant.prompt.redact` (now) against the same function with
  the patterns the gateway used before (`BEFORE_PATTERNS`, kept here as the baseline), on the
  inputs that froze the gateway: a question of "Is the patient" and 985 spaces, a history turn
  of "case no" and spaces, and 10,000-character runs.
- **`/health` while one such request runs.** A uvicorn process serves `GET /health` and the
  redaction, run as the gateway ran it before (the old patterns, on the event loop) and as it
  runs now (`redact` in a worker thread within `TEXT_DEADLINE_S`). `/health` is polled while
  the request is in flight; the figure is the slowest answer, against `/health` alone.

    .venv/bin/python -m benchmarks.assistant_text [--spaces 985] [--history 1500]

Prints one JSON object. The old patterns grow with the cube of the run of spaces: the defaults
reproduce the reported 7 s and 44 s requests, so the run takes about a minute; `--spaces 300
--history 400` takes seconds and shows the same shape.
"""

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn
from fastapi import Body, FastAPI

from devstack import ROOT
from devstack.postgres import free_port
from gateway.assistant import prompt
from gateway.assistant.service import TEXT_DEADLINE_S

IDENTIFIERS = ("PT-0042",)


def as_before(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """`pattern` as the gateway had it before the patterns were made linear: every run
    possessive now (`*+`, `++`) gave characters back, and the part of an e-mail address before
    the @ had no bound."""
    source = pattern.pattern.replace("*+", "*").replace("++", "+").replace("{1,64}@", "+@")
    return re.compile(source, pattern.flags)


BEFORE_PATTERNS = tuple(as_before(pattern) for pattern in prompt.IDENTIFIER_PATTERNS)
BEFORE_REDACTED_NUMBER = as_before(prompt.REDACTED_NUMBER)


def redact_before(text: str, identifiers: tuple[str, ...]) -> str:
    """`prompt.redact` with the old patterns: the same steps in the same order."""
    for identifier in sorted(identifiers, key=len, reverse=True):
        whole_word = rf"(?<![A-Za-z0-9]){re.escape(identifier)}(?![A-Za-z0-9])"
        text = re.sub(whole_word, prompt.REDACTED, text, flags=re.IGNORECASE)
    for pattern in BEFORE_PATTERNS:
        text = pattern.sub(prompt.REDACTED, text)
    return BEFORE_REDACTED_NUMBER.sub(prompt.REDACTED, text)


def hostile_inputs(spaces: int, history: int) -> dict[str, list[str]]:
    """Each case is the texts one request redacts (the question, then any history turn)."""
    question = "Is the patient" + " " * spaces + "?"
    turn = ("case no" + " " * history)[:history]
    return {
        "question_patient_spaces": [question],
        "question_and_history_turn": [question, turn],
        "spaces_10000": [" " * 10_000],
        "dotted_words_10000": ["a." * 5_000],
        "digits_and_spaces_10000": ["1 " * 5_000],
    }


def timed_ms(redact: Callable[[str, tuple[str, ...]], str], texts: list[str]) -> float:
    started = time.perf_counter()
    for text in texts:
        redact(text, IDENTIFIERS)
    return (time.perf_counter() - started) * 1000


def redaction_times(cases: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    results = {}
    for name, texts in cases.items():
        before = timed_ms(redact_before, texts)
        after = min(timed_ms(prompt.redact, texts) for _ in range(5))
        results[name] = {
            "characters": sum(len(text) for text in texts),
            "before_ms": round(before, 1),
            "after_ms": round(after, 3),
            "speedup": round(before / after, 1),
        }
    return results


def app() -> FastAPI:
    served = FastAPI()

    @served.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @served.post("/redact/before")
    async def before(texts: list[str] = Body()) -> dict[str, int]:
        # As the gateway did: redaction inline, on the event loop.
        return {"characters": sum(len(redact_before(text, IDENTIFIERS)) for text in texts)}

    @served.post("/redact/after")
    async def after(texts: list[str] = Body()) -> dict[str, int]:
        # As the gateway does (Assistant._off_the_loop): a worker thread, within the deadline.
        redacted = [
            await asyncio.wait_for(
                asyncio.to_thread(prompt.redact, text, IDENTIFIERS), TEXT_DEADLINE_S
            )
            for text in texts
        ]
        return {"characters": sum(len(text) for text in redacted)}

    return served


def health_latencies_ms(
    client: httpx.Client, until: threading.Event | None, count: int
) -> list[float]:
    """`/health` answer times: `count` of them, or, with `until`, at least one and as many
    more as fit before it is set (a fast request may be answered before the first)."""
    latencies: list[float] = []
    while not latencies or (len(latencies) < count if until is None else not until.is_set()):
        started = time.perf_counter()
        client.get("/health").raise_for_status()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def health_while_redacting(client: httpx.Client, side: str, texts: list[str]) -> dict[str, float]:
    """Send one redaction request to `/redact/{side}` and poll `/health` until it is answered."""
    done = threading.Event()
    request_ms: list[float] = []

    def send() -> None:
        try:
            started = time.perf_counter()
            client.post(f"/redact/{side}", json=texts).raise_for_status()
            request_ms.append((time.perf_counter() - started) * 1000)
        finally:
            done.set()

    sender = threading.Thread(target=send)
    sender.start()
    during = health_latencies_ms(client, done, 0)
    sender.join()
    return {
        "request_ms": round(request_ms[0], 1),
        "health_checks": len(during),
        "health_max_ms": round(max(during), 1),
    }


def health_during(base_url: str, texts: list[str]) -> dict[str, Any]:
    # httpx.Client is thread-safe: the sender and the poller share its connection pool.
    with httpx.Client(base_url=base_url, timeout=600) as client:
        idle = health_latencies_ms(client, None, 200)
        before = health_while_redacting(client, "before", texts)
        after = health_while_redacting(client, "after", texts)
    return {
        "health_alone_p50_ms": round(statistics.median(idle), 2),
        "before": before,
        "after": after,
        "health_max_ratio_before_after": round(before["health_max_ms"] / after["health_max_ms"], 1),
    }


def wait_until_serving(base_url: str, timeout_s: float = 120) -> None:
    # Generous: a busy machine takes many seconds to import FastAPI and start uvicorn.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base_url}/health", timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(
        f"the redaction server did not answer {base_url}/health within {timeout_s} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", type=int, default=985, help="spaces after 'Is the patient'")
    parser.add_argument("--history", type=int, default=1500, help="characters of the history turn")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the server process
    arguments = parser.parse_args()
    if arguments.serve:
        uvicorn.run(app(), host="127.0.0.1", port=arguments.serve, log_level="warning")
        return

    cases = hostile_inputs(arguments.spaces, arguments.history)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.assistant_text", "--serve", str(port)], cwd=ROOT
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_serving(base_url)
        served = health_during(base_url, cases["question_and_history_turn"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        json.dumps(
            {
                "spaces": arguments.spaces,
                "history_characters": arguments.history,
                "text_deadline_s": TEXT_DEADLINE_S,
                "redaction": redaction_times(cases),
                "health_during_question_and_history": served,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
