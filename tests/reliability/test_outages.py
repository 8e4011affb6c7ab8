"""A dependency goes away in the middle of a stream of predictions and comes back.

Whatever the timing, every request ends one of two ways: acknowledged (201) with its
prediction stored, or refused with a 503/504 envelope. Once the dependency is back the flow
works again with nobody restarting the gateway or the services, and a refused request
repeated under its own key completes, once.

A refused request stores no prediction when the model was what failed. When the store
itself fails, its commit may have landed just before the connection was lost; the caller
cannot tell, and repeating the key must then give back that prediction rather than a
second one.
"""

import time
from collections.abc import Callable

import pytest

from tests.reliability.stream import (
    Outcome,
    PredictionStream,
    assert_acknowledged_are_stored,
    assert_failed_stored_nothing,
    assert_failure_envelopes,
    post_prediction,
    statuses,
    stored_predictions,
)
from tests.support.launcher import RESTART_TIMEOUT_S, wait_for

# The first test of the package also waits for the stack (and its demo model) to start.
pytestmark = pytest.mark.timeout(600)
# Long enough for the clients to get a few predictions through either side of the outage.
BEFORE_OUTAGE_S = 3.0
OUTAGE_S = 3.0
RECOVERY_TIMEOUT_S = 60.0
REPLAYED = 5


def through_an_outage(
    gateway_url: str, headers: dict[str, str], stop: Callable[[], None], start: Callable[[], None]
) -> tuple[list[Outcome], float | None]:
    """The stream's outcomes, and how long after `start()` a new request first succeeded."""
    with PredictionStream(gateway_url, headers) as stream:
        time.sleep(BEFORE_OUTAGE_S)
        stop()
        try:
            time.sleep(OUTAGE_S)
        finally:
            start()  # whatever happens, the next test gets its dependency back
        back = time.monotonic()
        recovered = wait_for(
            lambda: stream.succeeded_since(back), RECOVERY_TIMEOUT_S, interval_s=0.2
        )
        recovered_after = time.monotonic() - back if recovered else None
        time.sleep(1.0)  # a little steady traffic after recovery too
    return stream.outcomes, recovered_after


def check(
    outcomes: list[Outcome],
    recovered_after: float | None,
    api,
    headers,
    data_url: str,
    user: str,
    *,
    refused_store_nothing: bool,
) -> None:
    counts = statuses(outcomes)
    print(f"outcomes {dict(counts)}; first success {recovered_after}s after the restart")
    assert recovered_after is not None, f"no prediction succeeded after the restart: {counts}"
    # Both kinds of ending must have happened, or the test proved nothing.
    assert counts[201] > 0 and counts[503] > 0, counts
    assert_failure_envelopes(outcomes, allowed={503, 504})

    stored = stored_predictions(data_url, user)
    assert_acknowledged_are_stored(outcomes, stored)
    if refused_store_nothing:
        assert_failed_stored_nothing(outcomes, stored)
    refused = [o for o in outcomes if o.status != 201]
    print(f"{sum(o.key in stored for o in refused)} refused requests' predictions were stored")

    # A refused request repeated under its key now completes, and there is one prediction
    # for the key: the one stored before, if any (those are repeated first).
    again_first = sorted(refused, key=lambda o: o.key not in stored)[:REPLAYED]
    for outcome in again_first:
        # As a client does with a 503 and its Retry-After: the restarted service's first
        # requests (or the gateway's breaker, closing again) may still turn one away.
        again = wait_for(
            lambda o=outcome: (
                (r := post_prediction(api, headers, o.image, o.key)).status_code != 503 and r
            ),
            RESTART_TIMEOUT_S,
            f"the repeat of {outcome.key} to be answered other than 503",
            interval_s=1.0,
        )
        if outcome.key in stored:
            assert again.status_code == 200, again.text
            assert again.json()["id"] == str(stored[outcome.key])
        else:
            assert again.status_code == 201, again.text
    after = stored_predictions(data_url, user)
    assert all(o.key in after for o in again_first)
    assert len(after) == len(stored) + sum(o.key not in stored for o in again_first)


def supervised(stack, action: str, name: str) -> Callable[[], None]:
    def run() -> None:
        done = stack.supervisorctl(action, name)
        assert ("stopped" if action == "stop" else "started") in done.stdout, (
            done.stdout + done.stderr
        )

    return run


@pytest.mark.parametrize(
    ("service", "refused_store_nothing"),
    [
        # The prediction is stored only after the model answered.
        ("inference", True),
        # The commit can land just before the connection drops: a refused request may have
        # stored its prediction, which its key then replays.
        ("data", False),
    ],
)
def test_a_service_stopping_mid_stream(
    api, stack, new_clinician, databases, service, refused_store_nothing
):
    headers, user = new_clinician()
    outcomes, recovered_after = through_an_outage(
        stack.url("gateway"),
        headers,
        stop=supervised(stack, "stop", service),
        start=supervised(stack, "start", service),
    )
    check(
        outcomes,
        recovered_after,
        api,
        headers,
        databases["data"],
        user,
        refused_store_nothing=refused_store_nothing,
    )


def test_postgresql_restarting_mid_stream(api, stack, new_clinician, databases, private_postgres):
    """The services keep their processes and their pools; they must reconnect by themselves."""
    headers, user = new_clinician()
    outcomes, recovered_after = through_an_outage(
        stack.url("gateway"), headers, stop=private_postgres.stop, start=private_postgres.start
    )
    check(
        outcomes,
        recovered_after,
        api,
        headers,
        databases["data"],
        user,
        refused_store_nothing=False,
    )
