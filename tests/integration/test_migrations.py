"""Each service's migrations create its database, run up and down, and match its models."""

import asyncio
import uuid

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from auth_service import models as _auth_models  # noqa: F401
from auth_service.database import Base as AuthBase
from common.db import async_url
from common.migrations import alembic_config, downgrade, ignoring, upgrade
from data_service import models as _data_models  # noqa: F401
from data_service.database import Base as DataBase
from inference_service import models as _inference_models  # noqa: F401
from inference_service.database import Base as InferenceBase
from slide_service import models as _slide_models  # noqa: F401
from slide_service.analyses.queue_schema import QUEUE_TABLES
from slide_service.database import Base as SlideBase
from tests.conftest import SERVICE_DIRS
from tests.support.sql import fetch

METADATA = {
    "auth": AuthBase.metadata,
    "inference": InferenceBase.metadata,
    "data": DataBase.metadata,
    "slides": SlideBase.metadata,
}
# Tables a library owns (the slide service's job queue), made by the same migrations.
FOREIGN_TABLES = {"slides": QUEUE_TABLES}


def tables(url: str) -> set[str]:
    rows = fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


def current_revision(url: str) -> str | None:
    rows = fetch(url, "SELECT version_num FROM alembic_version")
    return rows[0]["version_num"] if rows else None


@pytest.mark.parametrize("service", sorted(SERVICE_DIRS))
def test_upgrade_creates_database_and_tables_then_downgrade_removes_them(service, new_database_url):
    url = new_database_url(service)  # not created yet: the migration step must create it
    head = ScriptDirectory.from_config(
        alembic_config(SERVICE_DIRS[service], url)
    ).get_current_head()

    upgrade(SERVICE_DIRS[service], url)
    foreign = FOREIGN_TABLES.get(service, frozenset())
    assert tables(url) == set(METADATA[service].tables) | {"alembic_version"} | foreign
    assert current_revision(url) == head

    upgrade(SERVICE_DIRS[service], url)  # running it again is harmless
    assert current_revision(url) == head

    downgrade(SERVICE_DIRS[service], url, "base")
    assert tables(url) == {"alembic_version"}
    assert current_revision(url) is None

    upgrade(SERVICE_DIRS[service], url)
    assert current_revision(url) == head


async def _schema_diff(url: str, metadata, foreign_tables=frozenset()) -> list:
    engine = create_async_engine(async_url(url))
    options = {"include_name": ignoring(foreign_tables)}
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts=options), metadata
                )
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", sorted(SERVICE_DIRS))
def test_migrations_match_the_models(service, migrated_database_url):
    """A model change without its migration fails here, not in production."""
    url = migrated_database_url(service)
    foreign = FOREIGN_TABLES.get(service, frozenset())
    assert asyncio.run(_schema_diff(url, METADATA[service], foreign)) == []


UPLOADER = uuid.UUID(int=1)


def _insert_upload(url: str, sha256: str, patient_id: object = None) -> uuid.UUID:
    rows = fetch(
        url,
        "INSERT INTO images (id, sha256, content_type, width, height, byte_size, patient_id, "
        "uploaded_by) VALUES (gen_random_uuid(), $1, 'image/png', 8, 8, 100, $2, $3) "
        "RETURNING id",
        sha256,
        patient_id,
        UPLOADER,
    )
    return rows[0]["id"]


def _insert_prediction(url: str, image_id: uuid.UUID, heatmap_ref: str | None) -> uuid.UUID:
    rows = fetch(
        url,
        "INSERT INTO predictions (id, image_id, model_version, label, probability, "
        "probabilities, threshold, latency_ms, heatmap_ref, requested_by) VALUES "
        "(gen_random_uuid(), $1, 'v1', 'benign', 0.9, '{}', 0.5, 1, $2, $3) RETURNING id",
        image_id,
        heatmap_ref,
        UPLOADER,
    )
    return rows[0]["id"]


def _downgrade_refused_until_removed(
    url: str, revision: str, below: str, table: str, blocker: uuid.UUID, detail: str
) -> None:
    """Downgrading below `revision` is refused, losing nothing, while the row `blocker` of
    `table` exists; once it is removed, it goes through."""
    before = len(fetch(url, f"SELECT id FROM {table}"))
    with pytest.raises(RuntimeError, match=f"cannot downgrade below {revision}{detail}"):
        downgrade(SERVICE_DIRS["data"], url, below)
    assert current_revision(url) == revision
    assert len(fetch(url, f"SELECT id FROM {table}")) == before
    fetch(url, f"DELETE FROM {table} WHERE id = $1", blocker)
    downgrade(SERVICE_DIRS["data"], url, below)
    assert current_revision(url) == below


def test_0005_keeps_every_upload_and_its_heatmap_and_downgrades_only_without_losing_data(
    new_database_url,
):
    url = new_database_url("data")
    upgrade(SERVICE_DIRS["data"], url, "0004")
    patient = fetch(
        url,
        "INSERT INTO patients (id, external_ref) VALUES (gen_random_uuid(), 'M-1') RETURNING id",
    )
    image = _insert_upload(url, "a" * 64, patient[0]["id"])
    overlay = _insert_upload(url, "b" * 64, patient[0]["id"])
    prediction = _insert_prediction(url, image, str(overlay))

    upgrade(SERVICE_DIRS["data"], url, "0005")

    rows = fetch(url, "SELECT id, sha256, patient_id, idempotency_key FROM images ORDER BY sha256")
    assert [(r["id"], r["patient_id"], r["idempotency_key"]) for r in rows] == [
        (image, patient[0]["id"], None),
        (overlay, patient[0]["id"], None),
    ]
    stored = fetch(url, "SELECT heatmap_ref FROM predictions WHERE id = $1", prediction)
    assert stored[0]["heatmap_ref"] == overlay  # now a uuid referring to the image
    # The same bytes uploaded again (for no patient, here) are a record of their own.
    again = _insert_upload(url, "a" * 64)
    _downgrade_refused_until_removed(url, "0005", "0004", "images", again, "")
    stored = fetch(url, "SELECT heatmap_ref FROM predictions WHERE id = $1", prediction)
    assert stored[0]["heatmap_ref"] == str(overlay)


def test_0005_refuses_a_heatmap_ref_that_names_no_stored_image_naming_the_prediction(
    new_database_url,
):
    url = new_database_url("data")
    upgrade(SERVICE_DIRS["data"], url, "0004")
    image = _insert_upload(url, "c" * 64)
    forged = _insert_prediction(url, image, "../../etc/passwd")
    with pytest.raises(RuntimeError, match=str(forged)):
        upgrade(SERVICE_DIRS["data"], url, "0005")
    assert current_revision(url) == "0004"
    fetch(url, "UPDATE predictions SET heatmap_ref = NULL WHERE id = $1", forged)
    upgrade(SERVICE_DIRS["data"], url, "0005")
    assert current_revision(url) == "0005"


def test_0006_reads_earlier_predictions_as_not_recorded_and_downgrades_only_without_losing_verdicts(
    new_database_url,
):
    url = new_database_url("data")
    upgrade(SERVICE_DIRS["data"], url, "0005")
    image = _insert_upload(url, "d" * 64)
    earlier = _insert_prediction(url, image, None)

    upgrade(SERVICE_DIRS["data"], url, "0006")

    [row] = fetch(
        url,
        "SELECT label, probability, assessment, reasons, checks FROM predictions WHERE id = $1",
        earlier,
    )
    assert dict(row) == {
        "label": "benign",
        "probability": 0.9,
        "assessment": None,
        "reasons": None,
        "checks": None,
    }
    # What the constraints refuse of a row written by hand: a verdict on what was refused.
    with pytest.raises(asyncpg.CheckViolationError, match="label_unless_not_assessable"):
        fetch(
            url,
            "UPDATE predictions SET assessment = 'not_assessable', reasons = '{no_tissue}' "
            "WHERE id = $1",
            earlier,
        )
    refused = fetch(
        url,
        "INSERT INTO predictions (id, image_id, model_version, label, probability, "
        "probabilities, threshold, latency_ms, requested_by, assessment, reasons, checks) "
        "VALUES (gen_random_uuid(), $1, 'v1', NULL, NULL, '{}', 0.5, 1, $2, 'not_assessable', "
        "'{no_tissue}', '[]') RETURNING id",
        image,
        UPLOADER,
    )[0]["id"]
    _downgrade_refused_until_removed(url, "0006", "0005", "predictions", refused, ": 1 predictions")
    [row] = fetch(url, "SELECT label, probability FROM predictions WHERE id = $1", earlier)
    assert (row["label"], row["probability"]) == ("benign", 0.9)


def test_0007_builds_the_daily_rollups_from_the_rows_stored_before(new_database_url):
    url = new_database_url("data")
    upgrade(SERVICE_DIRS["data"], url, "0006")
    image = _insert_upload(url, "e" * 64)
    # Two days (UTC); one row from before assessments, two not assessable, one reviewed twice.
    rows = [
        ("2026-11-30 23:59:59+00", "v1", "benign", None, None, 4.0),
        ("2026-12-01 00:00:00+00", "v1", "benign", "assessable", [], 8.0),
        ("2026-12-01 10:00:00+01", "v1", "benign", "assessable", [], 16.0),
        ("2026-12-01 12:00:00+00", "v2", None, "not_assessable", ["no_tissue", "exposure"], 2.0),
        ("2026-12-01 13:00:00+00", "v2", None, "not_assessable", ["no_tissue"], 1000.0),
    ]
    ids = [
        fetch(
            url,
            "INSERT INTO predictions (id, image_id, model_version, label, probability, "
            "probabilities, threshold, latency_ms, requested_by, assessment, reasons, checks, "
            "created_at) VALUES (gen_random_uuid(), $1, $2, $3, $4, '{}', 0.5, $5, $6, $7, $8, "
            "CASE WHEN $7::varchar IS NULL THEN NULL ELSE '[]'::jsonb END, $9::text::timestamptz) "
            "RETURNING id",
            image,
            version,
            label,
            None if label is None else 0.9,
            latency,
            UPLOADER,
            assessment,
            None if assessment is None else reasons,
            created,
        )[0]["id"]
        for created, version, label, assessment, reasons, latency in rows
    ]
    for reviewer, verdict, current in [
        (uuid.uuid4(), "agree", True),
        (uuid.uuid4(), "disagree", True),
        (UPLOADER, "disagree", False),  # superseded: not counted
    ]:
        fetch(
            url,
            "INSERT INTO reviews (id, prediction_id, reviewer, verdict, corrected_label, "
            "is_current) VALUES (gen_random_uuid(), $1, $2, $3, $4, $5)",
            ids[1],
            reviewer,
            verdict,
            "malignant" if verdict == "disagree" else None,
            current,
        )

    upgrade(SERVICE_DIRS["data"], url, "0007")

    counts = fetch(
        url,
        "SELECT day::text, model_version, label, assessment, predictions, latency_ms_sum "
        "FROM prediction_day_counts ORDER BY 1, 2, 3, 4",
    )
    assert [tuple(row) for row in counts] == [
        ("2026-11-30", "v1", "benign", None, 1, 4.0),
        ("2026-12-01", "v1", "benign", "assessable", 2, 24.0),
        ("2026-12-01", "v2", None, "not_assessable", 2, 1002.0),
    ]
    reasons = fetch(url, "SELECT day::text, reason, predictions FROM prediction_day_reasons")
    assert sorted(tuple(row) for row in reasons) == [
        ("2026-12-01", "exposure", 1),
        ("2026-12-01", "no_tissue", 2),
    ]
    latencies = fetch(url, "SELECT sum(predictions) AS n FROM prediction_day_latencies")
    assert latencies[0]["n"] == 5
    reviews = fetch(
        url, "SELECT day::text, current, agree, reviewed_predictions FROM review_day_counts"
    )
    assert [tuple(row) for row in reviews] == [("2026-12-01", 2, 1, 1)]

    downgrade(SERVICE_DIRS["data"], url, "0006")
    assert current_revision(url) == "0006"
    assert fetch(url, "SELECT to_regclass('prediction_day_counts') AS t")[0]["t"] is None
    assert len(fetch(url, "SELECT id FROM predictions")) == len(rows)
