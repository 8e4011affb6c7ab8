"""The record of assistant exchanges: one append-only audit event each, for existing
predictions only, holding what identifies and measures the exchange and nothing else."""

import json
import uuid

import asyncpg
import pytest

from tests.support.sql import fetch_async
from tests.support.tokens import bearer, mint_token

EXCHANGE = {
    "kind": "explanation",
    "provider": "offline",
    "model": "templates",
    "prompt_sha256": "a" * 64,
    "latency_ms": 12.5,
    "replaced": True,
    "replaced_reason": "contradicts_facts",
    "attempted_provider": "openai",
    "input_tokens": 812,
    "output_tokens": 120,
}


async def test_an_exchange_is_recorded_as_an_audit_event(data, data_db):
    image = await data.image(21)
    prediction = (await data.prediction(image["id"])).json()

    answer = await data.client.post(
        f"/predictions/{prediction['id']}/explanations", json=EXCHANGE, headers=data.clinician
    )

    assert answer.status_code == 201, answer.text
    recorded = answer.json()
    assert recorded["prediction_id"] == prediction["id"]
    [event] = await fetch_async(
        data_db,
        "SELECT * FROM audit_events WHERE id = $1",
        recorded["audit_event_id"],
    )
    assert event["action"] == "prediction.explained"
    assert (event["resource_type"], event["resource_id"]) == ("prediction", prediction["id"])
    assert str(event["actor"]) == data.clinician_id
    assert json.loads(event["details"]) == EXCHANGE

    # Append-only, like every audit event.
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        connection = await asyncpg.connect(data_db)
        try:
            await connection.execute(
                "UPDATE audit_events SET details = '{}' WHERE id = $1", event["id"]
            )
        finally:
            await connection.close()
    # Even by the table's owner, and TRUNCATE skips row triggers: a statement trigger stops it.
    with pytest.raises(asyncpg.RaiseError, match="TRUNCATE is refused"):
        await fetch_async(data_db, "TRUNCATE audit_events")
    assert await fetch_async(data_db, "SELECT id FROM audit_events WHERE id = $1", event["id"])


async def test_bad_exchanges_are_refused_and_nothing_is_recorded(data, data_db):
    image = await data.image(22)
    prediction = (await data.prediction(image["id"])).json()
    path = f"/predictions/{prediction['id']}/explanations"
    before = await fetch_async(data_db, "SELECT count(*) AS n FROM audit_events")

    unknown = await data.client.post(
        f"/predictions/{uuid.uuid4()}/explanations", json=EXCHANGE, headers=data.clinician
    )
    assert unknown.status_code == 404
    viewer = await data.client.post(path, json=EXCHANGE, headers=bearer(mint_token("viewer")))
    assert viewer.status_code == 403
    for bad in (
        {**EXCHANGE, "prompt_sha256": "not a hash"},
        {**EXCHANGE, "kind": "gossip"},
        {**EXCHANGE, "latency_ms": -1},
        {**EXCHANGE, "prompt": "the whole prompt"},  # the text itself is never kept
        {**EXCHANGE, "api_key": "sk-secret"},
    ):
        refused = await data.client.post(path, json=bad, headers=data.clinician)
        assert refused.status_code == 422, bad

    after = await fetch_async(data_db, "SELECT count(*) AS n FROM audit_events")
    assert after[0]["n"] == before[0]["n"]
