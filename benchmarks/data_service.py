"""Listing and statistics of predictions at 10k and at 100k rows, in one run.

The 10k figures are the baseline; the 100k ones are reported as ratios to them. A ratio near
1 means the query is served by an index and stays flat as the table grows. Statistics over
a fixed window (the last 7 days, with the same number of predictions per day at both sizes)
should stay flat; statistics over all rows necessarily grow with the table and are reported
for completeness. Uses the service functions in-process against a temporary database.

    .venv/bin/python -m benchmarks.data_service [--repeat 30]
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from common.db import Database
from common.migrations import drop_database, upgrade
from data_service.predictions.service import PredictionFilter, list_page
from data_service.stats.service import summary
from devstack import ROOT
from devstack.postgres import LOCAL_SERVER_URL, with_database

PER_DAY = 100  # predictions per day at every size, so a 7-day window holds the same count
# Assessments in proportions a site might see: mostly assessable, some undecided or refused.
OUTCOMES = [
    ("assessable", []),
    ("indeterminate", ["near_threshold"]),
    ("not_assessable", ["no_tissue"]),
    ("not_assessable", ["out_of_focus", "pen_or_artefact"]),
]
OUTCOME_WEIGHTS = [85, 8, 5, 2]


async def fill(url: str, total: int, seed: int) -> None:
    """`total` predictions over total/PER_DAY days ending now; 10% reviewed."""
    rng = random.Random(seed)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("TRUNCATE reviews, predictions, images CASCADE")
        image_id, user = uuid.uuid4(), uuid.uuid4()
        await connection.execute(
            "INSERT INTO images (id, sha256, content_type, width, height, byte_size, "
            "uploaded_by) VALUES ($1, $2, 'image/png', 50, 50, 100, $3)",
            image_id,
            "0" * 64,
            user,
        )
        now = datetime.now(UTC)
        days = total // PER_DAY
        predictions, reviews = [], []
        for index in range(total):
            identifier = uuid.uuid4()
            malignant = rng.random() < 0.4
            p = rng.uniform(0.5, 1.0)
            created = now - timedelta(days=index % days, seconds=rng.uniform(0, 86000))
            assessment, reasons = rng.choices(OUTCOMES, weights=OUTCOME_WEIGHTS)[0]
            label = (
                None if assessment == "not_assessable" else ("malignant" if malignant else "benign")
            )
            predictions.append(
                (
                    identifier,
                    image_id,
                    None,
                    rng.choice(["v1", "v2", "v3"]),
                    label,
                    p if label else None,
                    json.dumps({"benign": 1 - p, "malignant": p}),
                    0.5,
                    rng.uniform(2, 20),
                    None,
                    user,
                    None,
                    created,
                    assessment,
                    reasons,
                )
            )
            if rng.random() < 0.1:
                reviews.append(
                    (
                        uuid.uuid4(),
                        identifier,
                        user,
                        "agree" if rng.random() < 0.8 else "disagree",
                        None,
                        None,
                        True,
                        created + timedelta(minutes=5),
                    )
                )
        await connection.copy_records_to_table(
            "predictions",
            records=predictions,
            columns=[
                "id",
                "image_id",
                "patient_id",
                "model_version",
                "label",
                "probability",
                "probabilities",
                "threshold",
                "latency_ms",
                "heatmap_ref",
                "requested_by",
                "idempotency_key",
                "created_at",
                "assessment",
                "reasons",
            ],
        )
        await connection.execute(
            "UPDATE predictions SET probabilities = probabilities"
        )  # JSON text -> jsonb cast
        corrected = [
            (r[0], r[1], r[2], r[3], "benign" if r[3] == "disagree" else None, *r[5:])
            for r in reviews
        ]
        await connection.copy_records_to_table(
            "reviews",
            records=corrected,
            columns=[
                "id",
                "prediction_id",
                "reviewer",
                "verdict",
                "corrected_label",
                "comment",
                "is_current",
                "created_at",
            ],
        )
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


async def median_ms(run, repeat: int) -> float:
    await run()  # warm caches
    durations = []
    for _ in range(repeat):
        started = time.perf_counter()
        await run()
        durations.append(time.perf_counter() - started)
    return round(statistics.median(durations) * 1000, 3)


async def measure(database: Database, repeat: int) -> dict:
    week_ago = datetime.now(UTC) - timedelta(days=7)

    async def with_session(function):
        async with database.sessions() as session:
            return await function(session)

    async def deep_cursor():
        cursor = None
        for _ in range(20):  # 20 pages in
            _, cursor = await with_session(
                lambda s, c=cursor: list_page(s, PredictionFilter(), 50, c)
            )
        return cursor

    cursor = await deep_cursor()
    queries = {
        "list_first_page": lambda s: list_page(s, PredictionFilter(), 50, None),
        "list_label_filter": lambda s: list_page(s, PredictionFilter(label="benign"), 50, None),
        "list_reviewed_filter": lambda s: list_page(s, PredictionFilter(reviewed=True), 50, None),
        "list_page_21": lambda s: list_page(s, PredictionFilter(), 50, cursor),
        "review_queue_first_page": lambda s: list_page(
            s, PredictionFilter(reviewed=False), 50, None, "review_priority"
        ),
        "stats_last_7_days": lambda s: summary(s, week_ago, None),
        "stats_all_rows": lambda s: summary(s, None, None),
    }
    return {
        name: await median_ms(lambda q=query: with_session(q), repeat)
        for name, query in queries.items()
    }


async def main_async(repeat: int) -> dict:
    server = (
        os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or LOCAL_SERVER_URL
    )
    url = with_database(server, f"bench_data_{os.getpid()}")
    await asyncio.to_thread(upgrade, ROOT / "data_service", url)
    database = Database(url)
    results = {}
    try:
        for total in (10_000, 100_000):
            started = time.perf_counter()
            await fill(url, total, seed=total)
            fill_s = round(time.perf_counter() - started, 1)
            results[total] = {"fill_seconds": fill_s, **await measure(database, repeat)}
    finally:
        await database.dispose()
        await drop_database(url)
    small, large = results[10_000], results[100_000]
    return {
        "benchmark": "data_service",
        "repeat": repeat,
        "rows_10k_ms": small,
        "rows_100k_ms": large,
        "ratio_100k_to_10k": {
            k: round(large[k] / small[k], 2) for k in small if k != "fill_seconds"
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.repeat)), indent=2))


if __name__ == "__main__":
    main()
