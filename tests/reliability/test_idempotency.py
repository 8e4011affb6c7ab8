"""The same upload sent several times at once under one Idempotency-Key is stored once."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.reliability.stream import fresh_image, post_prediction, stored_predictions

# The first test of the package also waits for the stack (and its demo model) to start.
pytestmark = pytest.mark.timeout(600)
CONCURRENT = 8


def test_concurrent_repeats_of_one_key_store_one_prediction(stack, new_clinician, databases):
    headers, user = new_clinician()
    image, key = fresh_image(), f"double-click-{uuid.uuid4()}"

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=stack.url("gateway"), timeout=30) as client:
            return post_prediction(client, headers, image, key)

    with ThreadPoolExecutor(CONCURRENT) as pool:
        answers = list(pool.map(send, range(CONCURRENT)))

    assert sorted(a.status_code for a in answers) == [200] * (CONCURRENT - 1) + [201], [
        (a.status_code, a.text[:200]) for a in answers
    ]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1, ids
    assert all(
        a.headers.get("idempotent-replayed") == "true" for a in answers if a.status_code == 200
    )
    assert stored_predictions(databases["data"], user) == {key: uuid.UUID(ids.pop())}
