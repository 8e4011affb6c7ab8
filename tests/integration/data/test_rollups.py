"""The daily rollups behind /stats: they add up to what the rows say, for any period (whole
days from the rollups, the ends of partial days from the rows), under concurrent writers,
and through reviews that supersede each other."""

import asyncio
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import text

from data_service.stats import rollups
from data_service.stats.service import summary
from tests.support.sql import fetch_async
from tests.support.tokens import bearer, mint_token

START = datetime(2026, 11, 20, tzinfo=UTC)
OUTCOMES = [
    ("assessable", "benign", []),
    ("assessable", "malignant", ["pen_or_artefact"]),
    ("indeterminate", "malignant", ["near_threshold"]),
    ("not_assessable", None, ["no_tissue"]),
    ("not_assessable", None, ["out_of_focus", "exposure"]),
]


async def _stored_at(data, image_id: str, created: datetime, rng: random.Random) -> dict:
    """A prediction stored through the service's own path (`rollups.count_prediction` in
    its transaction), at a chosen moment rather than now."""
    assessment, label, reasons = rng.choice(OUTCOMES)
    row = {
        "id": uuid.uuid4(),
        "version": rng.choice(["v1", "v2"]),
        "label": label,
        "assessment": assessment,
        "reasons": reasons,
        "latency_ms": round(rng.lognormvariate(2.5, 0.8), 3),
        "created": created,
    }
    async with data.app.state.database.sessions() as session:
        await session.execute(
            text(
                "INSERT INTO predictions (id, image_id, model_version, label, probability, "
                "probabilities, threshold, latency_ms, requested_by, assessment, reasons, "
                "checks, created_at) VALUES (:id, :image, :version, :label, :p, "
                '\'{"benign": 0.1, "malignant": 0.9}\', 0.5, '
                ":latency, :caller, :assessment, :reasons, '[]', :created)"
            ),
            {
                "id": row["id"],
                "image": uuid.UUID(image_id),
                "version": row["version"],
                "label": label,
                "p": None if label is None else 0.9,
                "latency": row["latency_ms"],
                "caller": uuid.UUID(data.clinician_id),
                "assessment": assessment,
                "reasons": reasons,
                "created": created,
            },
        )
        await rollups.count_prediction(session, row["id"])
        await session.commit()
    return row


def _expected(rows: list[dict], reviews: dict, start: datetime | None, end: datetime | None):
    """What /stats should say of the rows in [start, end], counted in Python."""
    inside = [
        r
        for r in rows
        if (start is None or r["created"] >= start) and (end is None or r["created"] <= end)
    ]
    current = [
        verdict
        for (prediction, _), verdict in reviews.items()
        if any(r["id"] == prediction for r in inside)
    ]
    reviewed = {
        prediction for prediction, _ in reviews if any(r["id"] == prediction for r in inside)
    }
    latencies = [r["latency_ms"] for r in inside]
    return {
        "predictions": len(inside),
        "by_label": dict(sorted(Counter(r["label"] for r in inside if r["label"]).items())),
        "by_model_version": dict(sorted(Counter(r["version"] for r in inside).items())),
        "by_assessment": Counter(r["assessment"] for r in inside),
        "by_reason": Counter(reason for r in inside for reason in r["reasons"]),
        "by_day": Counter(r["created"].date().isoformat() for r in inside),
        "mean": float(np.mean(latencies)) if latencies else None,
        "p95": float(np.percentile(latencies, 95)) if latencies else None,
        "reviews": (len(current), current.count("agree"), len(reviewed)),
    }


def _check(stats, expected) -> None:
    assert stats.predictions == expected["predictions"]
    assert stats.by_label == expected["by_label"]
    assert stats.by_model_version == expected["by_model_version"]
    assert {k: v for k, v in stats.by_assessment.items() if v} == dict(expected["by_assessment"])
    assert {k: v for k, v in stats.by_reason.items() if v} == dict(expected["by_reason"])
    assert {d.day.isoformat(): d.count for d in stats.by_day} == dict(expected["by_day"])
    reviews = stats.reviews
    assert (reviews.current, reviews.agree, reviews.reviewed_predictions) == expected["reviews"]
    if expected["mean"] is None:
        assert stats.mean_latency_ms is None and stats.p95_latency_ms is None
    else:
        assert stats.mean_latency_ms == pytest.approx(expected["mean"], abs=1e-3)
        # Read from buckets eight to a doubling: within half a bucket.
        assert stats.p95_latency_ms == pytest.approx(expected["p95"], rel=0.0443)


async def test_statistics_of_any_period_equal_a_recount_of_the_rows(data):
    rng = random.Random(24)
    image = await data.image(240)
    rows = [
        await _stored_at(
            data, image["id"], START + timedelta(seconds=rng.uniform(0, 4 * 86400)), rng
        )
        for _ in range(120)
    ]
    # One on each side of a midnight, and one exactly on it.
    for moment in [START + timedelta(days=2, microseconds=-1), START + timedelta(days=2)]:
        rows.append(await _stored_at(data, image["id"], moment, rng))
    reviewers = [bearer(mint_token("clinician", str(uuid.uuid4()))) for _ in range(3)]
    reviews: dict = {}  # (prediction, reviewer index) -> current verdict
    for _ in range(60):  # reviews, and reviews that supersede the same reviewer's earlier one
        row = rng.choice([r for r in rows if r["label"]])
        who = rng.randrange(len(reviewers))
        verdict = rng.choice(["agree", "disagree"])
        body = {"verdict": verdict}
        if verdict == "disagree":
            body["corrected_label"] = "benign" if row["label"] == "malignant" else "malignant"
        answer = await data.client.post(
            f"/predictions/{row['id']}/reviews", json=body, headers=reviewers[who]
        )
        assert answer.status_code == 201, answer.text
        reviews[(row["id"], who)] = verdict

    periods = [
        (None, None),
        (START + timedelta(days=1, hours=10, minutes=30), START + timedelta(days=3, hours=14)),
        (START + timedelta(days=2), None),  # from a midnight: whole days only
        (None, START + timedelta(days=2)),  # to a midnight, which it holds
        (START + timedelta(days=1, hours=3), START + timedelta(days=1, hours=20)),  # within a day
        (START + timedelta(days=2, hours=-1), START + timedelta(days=2, hours=1)),  # across one
        (START - timedelta(days=30), START - timedelta(days=29)),  # nothing in it
    ]
    for start, end in periods:
        async with data.app.state.database.sessions() as session:
            stats = await summary(session, start, end)
        _check(stats, _expected(rows, reviews, start, end))


async def test_concurrent_writers_to_the_same_day_all_count(data, data_db):
    image = await data.image(241)
    answers = await asyncio.gather(
        *(data.prediction(image["id"], "benign", latency_ms=5.0) for _ in range(24))
    )
    assert {answer.status_code for answer in answers} == {201}
    [row] = await fetch_async(
        data_db,
        "SELECT sum(predictions) AS n, sum(latency_ms_sum) AS total FROM prediction_day_counts",
    )
    assert (row["n"], row["total"]) == (24, 120.0)
    [row] = await fetch_async(data_db, "SELECT sum(predictions) AS n FROM prediction_day_latencies")
    assert row["n"] == 24


async def test_a_repeated_idempotency_key_is_counted_once(data, data_db):
    image = await data.image(242)
    first = await data.prediction(image["id"], "benign", key="once")
    again = await data.prediction(image["id"], "benign", key="once")
    assert (first.status_code, again.status_code) == (201, 200)
    [row] = await fetch_async(data_db, "SELECT sum(predictions) AS n FROM prediction_day_counts")
    assert row["n"] == 1


def test_latency_percentile_interpolates_between_bucket_middles():
    assert rollups.latency_percentile({}, 0.95) is None
    # Every latency in one bucket: the answer is its middle, within half a bucket of each.
    bucket = 60
    middle = rollups.bucket_middle_ms(bucket)
    assert rollups.latency_percentile({bucket: 10}, 0.95) == pytest.approx(middle)
    low, high = rollups.bucket_middle_ms(10), rollups.bucket_middle_ms(20)
    # Ranks 0..9 in bucket 10 and rank 10 in bucket 20: 0.95 * 10 = 9.5, halfway.
    assert rollups.latency_percentile({10: 10, 20: 1}, 0.95) == pytest.approx((low + high) / 2)


async def test_sql_buckets_hold_their_latencies_within_half_a_bucket(data):
    latencies = [0.0, 0.005, 0.01, 0.5, 1.0, 3.3, 47.0, 999.9, 1e5, 1e9]
    async with data.app.state.database.sessions() as session:
        for latency in latencies:
            bucket = await session.scalar(text("SELECT latency_bucket(:v)"), {"v": latency})
            assert 0 <= bucket < rollups.LATENCY_BUCKETS
            if rollups.LATENCY_FLOOR_MS <= latency < rollups.bucket_middle_ms(199):
                assert rollups.bucket_middle_ms(bucket) == pytest.approx(latency, rel=0.0443)
