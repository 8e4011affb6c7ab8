"""A steady stream of predictions from a few concurrent clients, and what became of each.

Every request sends an image of its own under an Idempotency-Key of its own, so the data
service's rows can be matched to the answers one by one afterwards.
"""

import itertools
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import httpx

from tests.support.images import png_bytes
from tests.support.sql import fetch

_seeds = itertools.count(50_000)
_seed_lock = threading.Lock()
# Well above the gateway's own limits (predict timeout, retries): a request that outlives
# it has hung, which is a failure in itself.
CLIENT_TIMEOUT_S = 30.0


def fresh_image() -> bytes:
    with _seed_lock:
        seed = next(_seeds)
    return png_bytes(seed=seed, size=32)


@dataclass(frozen=True)
class Outcome:
    key: str
    image: bytes
    started: float  # time.monotonic()
    status: int  # 0: no answer at all (connection failed or the client timed out)
    body: dict | None
    request_id: str | None

    @property
    def prediction_id(self) -> uuid.UUID:
        assert self.body is not None
        return uuid.UUID(self.body["id"])


def post_prediction(client: httpx.Client, headers: dict[str, str], image: bytes, key: str):
    return client.post(
        "/api/v1/predictions",
        params={"heatmap": "false"},  # one model call and one stored image per request
        files={"file": ("slide.png", image, "image/png")},
        headers={**headers, "Idempotency-Key": key},
    )


class PredictionStream:
    """`clients` threads posting predictions back to back until `stop()`."""

    def __init__(self, gateway_url: str, headers: dict[str, str], clients: int = 4) -> None:
        self.gateway_url = gateway_url
        self.headers = headers
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, name=f"stream-{n}", daemon=True)
            for n in range(clients)
        ]

    def __enter__(self) -> "PredictionStream":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Outcome]:
        self._stopping.set()
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT_S + 5)
        return list(self.outcomes)

    def succeeded_since(self, moment: float) -> bool:
        with self._lock:
            return any(o.status == 201 and o.started >= moment for o in self.outcomes)

    def _client(self) -> None:
        with httpx.Client(base_url=self.gateway_url, timeout=CLIENT_TIMEOUT_S) as client:
            while not self._stopping.is_set():
                image, key = fresh_image(), f"stream-{uuid.uuid4()}"
                started = time.monotonic()
                try:
                    answer = post_prediction(client, self.headers, image, key)
                except httpx.HTTPError:
                    outcome = Outcome(key, image, started, 0, None, None)
                else:
                    try:
                        body = answer.json()
                    except ValueError:
                        body = None
                    request_id = answer.headers.get("x-request-id")
                    outcome = Outcome(key, image, started, answer.status_code, body, request_id)
                with self._lock:
                    self.outcomes.append(outcome)
                if outcome.status != 201:
                    time.sleep(0.2)  # as a polite client would, rather than spin on 503s


def statuses(outcomes: list[Outcome]) -> Counter[int]:
    return Counter(o.status for o in outcomes)


def stored_predictions(data_url: str, user_id: str) -> dict[str, uuid.UUID]:
    """Idempotency key -> prediction id, for every prediction of the user."""
    rows = fetch(
        data_url,
        "SELECT id, idempotency_key FROM predictions WHERE requested_by = $1",
        uuid.UUID(user_id),
    )
    return {row["idempotency_key"]: row["id"] for row in rows}


def assert_failure_envelopes(outcomes: list[Outcome], allowed: set[int]) -> None:
    for outcome in outcomes:
        if outcome.status == 201:
            continue
        assert outcome.status in allowed, (outcome.status, outcome.body)
        assert outcome.body is not None and "error" in outcome.body, outcome.body
        error = outcome.body["error"]
        assert error["request_id"] == outcome.request_id, error
        assert error["code"] in ("service_unavailable", "gateway_timeout"), error


def assert_acknowledged_are_stored(outcomes: list[Outcome], stored: dict[str, uuid.UUID]) -> None:
    for outcome in outcomes:
        if outcome.status == 201:
            assert stored.get(outcome.key) == outcome.prediction_id, outcome.key


def assert_failed_stored_nothing(outcomes: list[Outcome], stored: dict[str, uuid.UUID]) -> None:
    leaked = [o.key for o in outcomes if o.status != 201 and o.key in stored]
    assert leaked == [], f"refused requests stored predictions: {leaked}"
