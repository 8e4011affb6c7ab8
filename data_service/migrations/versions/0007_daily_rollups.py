"""daily rollups of predictions and reviews, read by /stats; disputed predictions indexed

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 21:00:00.000000

`/stats` read every prediction of its period: 150 ms at 100k rows, growing with the table.
It now reads rollups by UTC day (counts by model version, label and assessment, with the
latency sum; counts by reason; counts by latency bucket, eight to a doubling from 0.01 ms;
current reviews), which the data service keeps in the transaction of each write. The
upgrade builds them from the rows already stored, so `/stats` answers as before.

`NULLS NOT DISTINCT` (PostgreSQL 15 and newer) makes a NULL label or assessment a value of
the counts' key.

The review queue read its disputed predictions by walking every prediction newest first
and looking for a disagreement: at 1M rows, 1.5 s for a reviewer who had reviewed every
dispute. Predictions now say whether they are `disputed` (a current review disagrees; kept
when a review is stored), with a partial index newest first, as undecided ones have.

The downgrade drops the rollups, the flag and its index; nothing else depends on them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Latencies in buckets eight to a doubling from 0.01 ms, 200 of them (the last from about
# 5 min on): `data_service.stats.rollups` reads them back.
LATENCY_BUCKET = """
CREATE FUNCTION latency_bucket(latency_ms double precision) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN LEAST(GREATEST(floor(8 * ln(GREATEST(latency_ms, 0.01) / 0.01) / ln(2)), 0), 199)::smallint
"""
BACKFILL = [
    "INSERT INTO prediction_day_counts "
    "(day, model_version, label, assessment, predictions, latency_ms_sum) "
    "SELECT (created_at AT TIME ZONE 'UTC')::date, "
    "model_version, label, assessment, count(*), sum(latency_ms) "
    "FROM predictions GROUP BY 1, 2, 3, 4",
    "INSERT INTO prediction_day_reasons (day, reason, predictions) "
    "SELECT (created_at AT TIME ZONE 'UTC')::date, reason, count(*) "
    "FROM predictions, unnest(reasons) AS named(reason) "
    "GROUP BY 1, 2",
    "INSERT INTO prediction_day_latencies (day, bucket, predictions) "
    "SELECT (created_at AT TIME ZONE 'UTC')::date, latency_bucket(latency_ms), count(*) "
    "FROM predictions GROUP BY 1, 2",
    "INSERT INTO review_day_counts (day, current, agree, reviewed_predictions) "
    "SELECT (p.created_at AT TIME ZONE 'UTC')::date, count(*), "
    "count(*) FILTER (WHERE r.verdict = 'agree'), count(DISTINCT r.prediction_id) "
    "FROM reviews r JOIN predictions p ON p.id = r.prediction_id WHERE r.is_current GROUP BY 1",
]


def upgrade() -> None:
    op.create_table(
        "prediction_day_counts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=32), nullable=True),
        sa.Column("assessment", sa.String(length=16), nullable=True),
        sa.Column("predictions", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms_sum", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_day_counts")),
    )
    op.create_index(
        "uq_prediction_day_counts_key",
        "prediction_day_counts",
        ["day", "model_version", "label", "assessment"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "prediction_day_reasons",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("predictions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "reason", name=op.f("pk_prediction_day_reasons")),
    )
    op.create_table(
        "prediction_day_latencies",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), nullable=False),
        sa.Column("predictions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "bucket", name=op.f("pk_prediction_day_latencies")),
    )
    op.create_table(
        "review_day_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("current", sa.BigInteger(), nullable=False),
        sa.Column("agree", sa.BigInteger(), nullable=False),
        sa.Column("reviewed_predictions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_review_day_counts")),
    )
    op.add_column(
        "predictions",
        sa.Column("disputed", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.execute(
        "UPDATE predictions SET disputed = true WHERE id IN "
        "(SELECT prediction_id FROM reviews WHERE is_current AND verdict = 'disagree')"
    )
    op.create_index(
        "ix_predictions_disputed_created_at_id",
        "predictions",
        [sa.text("created_at DESC"), sa.text("id DESC")],
        postgresql_where=sa.text("disputed"),
    )
    op.execute(LATENCY_BUCKET)
    for statement in BACKFILL:
        op.execute(statement)


def downgrade() -> None:
    op.drop_index("ix_predictions_disputed_created_at_id", table_name="predictions")
    op.drop_column("predictions", "disputed")
    op.drop_table("review_day_counts")
    op.drop_table("prediction_day_latencies")
    op.drop_table("prediction_day_reasons")
    op.drop_index("uq_prediction_day_counts_key", table_name="prediction_day_counts")
    op.drop_table("prediction_day_counts")
    op.execute("DROP FUNCTION latency_bucket(double precision)")
