"""Listing and statistics of predictions at 10k, 100k and 1M rows, in one run.

The 10k figures are the baseline; the larger sizes are reported as ratios to them. A ratio
near 1 means the query is served by an index and stays flat as the table grows. Statistics
read daily rollups, so they follow the number of days, not of rows: over all rows the 1M
figure is compared with the 100k one (target at most 1.5); every size spans one year. Each
size gets a database of its own, filled at migration 0006 and then upgraded, so the rollups
are built by migration 0007's backfill, as on a site that upgrades. Last, the cost the rollups
add to storing one prediction: the service's `create` with and without them, in the same run.

    .venv/bin/python -m benchmarks.data_service [--repeat 30] [--sizes 10000,100000,1000000]
        [--explain]
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
from sqlalchemy import event

from common.db import Database
from common.migrations import drop_database, upgrade
from data_service.predictions import service as predictions
from data_service.predictions.schemas import PredictionCreate
from data_service.predictions.service import PredictionFilter, list_page
from data_service.stats import rollups
from data_service.stats.service import summary
from devstack import ROOT
from devstack.postgres import LOCAL_SERVER_URL, with_database

# A year of predictions at every size, as a site keeps them: the rollups hold the same days
# at 100k and 1M rows, so statistics over all rows stay flat; a 7-day window holds 7/365.
DAYS = 365
# Assessments in proportions a site might see: mostly assessable, some undecided or refused.
OUTCOMES = [
    ("assessable", []),
    ("indeterminate", ["near_threshold"]),
    ("not_assessable", ["no_tissue"]),
    ("not_assessable", ["out_of_focus", "pen_or_artefact"]),
]
OUTCOME_WEIGHTS = [85, 8, 5, 2]


async def fill(url: str, total: int, seed: int) -> None:
    """`total` predictions over the `DAYS` days ending now; 10% reviewed."""
    rng = random.Random(seed)
    connection = await asyncpg.connect(url)
    try:
        image_id, user = uuid.uuid4(), uuid.uuid4()
        await connection.execute(
            "INSERT INTO images (id, sha256, content_type, width, height, byte_size, "
            "uploaded_by) VALUES ($1, $2, 'image/png', 50, 50, 100, $3)",
            image_id,
            "0" * 64,
            user,
        )
        now = datetime.now(UTC)
        predictions, reviews = [], []
        for index in range(total):
            identifier = uuid.uuid4()
            malignant = rng.random() < 0.4
            p = rng.uniform(0.5, 1.0)
            created = now - timedelta(days=index % DAYS, seconds=rng.uniform(0, 86000))
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


def queries(cursor: str | None, reviewer: uuid.UUID):
    week_ago = datetime.now(UTC) - timedelta(days=7)
    return {
        "list_first_page": lambda s: list_page(s, PredictionFilter(), 50, None),
        "list_label_filter": lambda s: list_page(s, PredictionFilter(label="benign"), 50, None),
        "list_reviewed_filter": lambda s: list_page(s, PredictionFilter(reviewed=True), 50, None),
        "list_unreviewed_filter": lambda s: list_page(
            s, PredictionFilter(reviewed=False), 50, None
        ),
        "list_page_21": lambda s: list_page(s, PredictionFilter(), 50, cursor),
        "review_queue_first_page": lambda s: list_page(
            s, PredictionFilter(reviewed=False), 50, None, "review_priority"
        ),
        "review_queue_of_a_second_reviewer": lambda s: list_page(
            s,
            PredictionFilter(reviewer=reviewer, reviewed_by_reviewer=False),
            50,
            None,
            "review_priority",
        ),
        "stats_last_7_days": lambda s: summary(s, week_ago, None),
        "stats_all_rows": lambda s: summary(s, None, None),
    }


async def measure(database: Database, repeat: int, reviewer: uuid.UUID) -> dict:
    async def with_session(function):
        async with database.sessions() as session:
            return await function(session)

    cursor = None
    for _ in range(20):  # 20 pages in
        _, cursor = await with_session(lambda s, c=cursor: list_page(s, PredictionFilter(), 50, c))
    return {
        name: await median_ms(lambda q=query: with_session(q), repeat)
        for name, query in queries(cursor, reviewer).items()
    }


async def explain(database: Database, url: str, reviewer: uuid.UUID) -> dict[str, list[str]]:
    """The plan of every statement each query runs, as EXPLAIN (ANALYZE, BUFFERS) gives it:
    its scans, sorts and limits, and the execution time."""
    statements: list[tuple[str, tuple]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append((statement, tuple(parameters or ())))

    plans: dict[str, list[str]] = {}
    connection = await asyncpg.connect(url)
    try:
        for name, query in queries(None, reviewer).items():
            statements.clear()
            event.listen(database.engine.sync_engine, "before_cursor_execute", capture)
            try:
                async with database.sessions() as session:
                    await query(session)
            finally:
                event.remove(database.engine.sync_engine, "before_cursor_execute", capture)
            lines = []
            for statement, parameters in statements:
                if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                    continue  # the snapshot's SET TRANSACTION
                rows = await connection.fetch(
                    f"EXPLAIN (ANALYZE, BUFFERS) {statement}", *parameters
                )
                lines += [
                    row[0].strip()
                    for row in rows
                    if any(word in row[0] for word in ("Scan", "Sort", "Limit", "Execution"))
                ]
            plans[name] = lines
    finally:
        await connection.close()
    return plans


async def store_cost(url: str, repeat: int) -> dict:
    """Milliseconds to store one prediction (service `create`, committed), with the rollups
    and with `rollups.count_prediction` left out, alternating so both see the same load."""
    database = Database(url)
    connection = await asyncpg.connect(url)
    try:
        image_id = await connection.fetchval("SELECT id FROM images LIMIT 1")
    finally:
        await connection.close()
    caller = str(uuid.uuid4())
    body = PredictionCreate(
        image_id=image_id,
        model_version="v1",
        label="benign",
        probability=0.9,
        probabilities={"benign": 0.9, "malignant": 0.1},
        threshold=0.5,
        latency_ms=4.0,
        assessment="assessable",
        reasons=[],
        checks=[],
    )
    counted = rollups.count_prediction

    async def skipped(session, prediction_id):
        return None

    async def store() -> None:
        async with database.sessions() as session:
            await predictions.create(session, body, caller, None)
            await session.commit()

    timings: dict[str, list[float]] = {"with_rollups": [], "without_rollups": []}
    try:
        await store()
        for _ in range(repeat):
            for variant in timings:
                rollups.count_prediction = counted if variant == "with_rollups" else skipped
                started = time.perf_counter()
                await store()
                timings[variant].append(time.perf_counter() - started)
    finally:
        rollups.count_prediction = counted
        await database.dispose()
    medians = {k: round(statistics.median(v) * 1000, 3) for k, v in timings.items()}
    return {
        **{f"store_{k}_ms": v for k, v in medians.items()},
        "ratio_store_with_to_without_rollups": round(
            medians["with_rollups"] / medians["without_rollups"], 3
        ),
    }


async def one_size(server: str, total: int, repeat: int, with_plans: bool) -> dict:
    url = with_database(server, f"bench_data_{os.getpid()}_{total}")
    await asyncio.to_thread(upgrade, ROOT / "data_service", url, "0006")
    database = Database(url)
    try:
        started = time.perf_counter()
        await fill(url, total, seed=total)
        await asyncio.to_thread(upgrade, ROOT / "data_service", url)  # the rollups' backfill
        fill_s = round(time.perf_counter() - started, 1)
        connection = await asyncpg.connect(url)
        try:
            await connection.execute("VACUUM ANALYZE")
            reviewer = await connection.fetchval("SELECT reviewer FROM reviews LIMIT 1")
        finally:
            await connection.close()
        figures = {"fill_seconds": fill_s, **await measure(database, repeat, reviewer)}
        if with_plans:
            figures["plans"] = await explain(database, plain_url(url), reviewer)
        return figures
    finally:
        await database.dispose()
        await drop_database(url)


def plain_url(url: str) -> str:
    """The URL as asyncpg takes it (no SQLAlchemy driver name)."""
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def main_async(repeat: int, sizes: list[int], with_plans: bool) -> dict:
    server = (
        os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or LOCAL_SERVER_URL
    )
    results = {}
    for total in sizes:
        results[total] = await one_size(server, total, repeat, with_plans and total == sizes[-1])
    smallest = results[sizes[0]]
    url = with_database(server, f"bench_data_{os.getpid()}_store")
    await asyncio.to_thread(upgrade, ROOT / "data_service", url)
    try:
        await fill(url, 1000, seed=1)
        store = await store_cost(url, repeat * 5)
    finally:
        await drop_database(url)
    report: dict = {
        "benchmark": "data_service",
        "repeat": repeat,
        **{f"rows_{total}_ms": figures for total, figures in results.items()},
    }
    for total in sizes[1:]:
        report[f"ratio_{total}_to_{sizes[0]}"] = {
            k: round(results[total][k] / smallest[k], 2)
            for k in smallest
            if k not in ("fill_seconds", "plans")
        }
    if len(sizes) >= 3:
        # Statistics over every row can only stay flat from the rollups on: 1M / 100k.
        large, larger = results[sizes[-2]], results[sizes[-1]]
        report["ratio_stats_all_rows_largest_to_second"] = round(
            larger["stats_all_rows"] / large["stats_all_rows"], 2
        )
    report["targets"] = {
        "list_100k_to_10k_at_most": 1.2,
        "stats_all_rows_1m_to_100k_at_most": 1.5,
    }
    report["store"] = store
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--explain", action="store_true", help="plans at the largest size")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    print(json.dumps(asyncio.run(main_async(args.repeat, sizes, args.explain)), indent=2))


if __name__ == "__main__":
    main()
