"""images: one record per upload; predictions: heatmap_ref names a stored image

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 06:00:00.000000

Until now an image row was unique per content, and a second upload of the same bytes (for
another patient too) was given the first upload's row. Each existing row was one upload,
so every row stays as it is, the record of its upload; only the uniqueness goes. A
prediction filed before this under another patient's earlier upload cannot be told apart
here: nothing recorded which patient its request named.

The downgrade brings the uniqueness back, which is only possible while no two records share
their bytes; afterwards it refuses rather than delete uploads.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("uq_images_sha256"), "images", type_="unique")
    op.create_index(op.f("ix_images_sha256"), "images", ["sha256"], unique=False)
    op.add_column("images", sa.Column("idempotency_key", sa.String(length=160), nullable=True))
    op.create_index(
        "uq_images_idempotency",
        "images",
        ["uploaded_by", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    # heatmap_ref held the overlay's image id as text; it becomes a reference to that image.
    # A value that is not the id of a stored image would be lost by the conversion, so the
    # upgrade stops and names the predictions instead.
    dangling = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT id FROM predictions WHERE heatmap_ref IS NOT NULL AND NOT EXISTS ("
                "SELECT 1 FROM images WHERE images.id::text = lower(predictions.heatmap_ref))"
                " ORDER BY created_at LIMIT 20"
            )
        )
        .scalars()
        .all()
    )
    if dangling:
        raise RuntimeError(
            "predictions whose heatmap_ref names no stored image (first 20: "
            f"{', '.join(str(i) for i in dangling)}); set their heatmap_ref to NULL after "
            "checking them, then migrate again"
        )
    op.alter_column(
        "predictions",
        "heatmap_ref",
        type_=sa.UUID(),
        existing_type=sa.String(length=256),
        postgresql_using="heatmap_ref::uuid",
    )
    op.create_foreign_key(
        op.f("fk_predictions_heatmap_ref_images"), "predictions", "images", ["heatmap_ref"], ["id"]
    )


def downgrade() -> None:
    shared = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT count(*) FROM (SELECT 1 FROM images GROUP BY sha256 "
                "HAVING count(*) > 1) AS shared"
            )
        )
        .scalar_one()
    )
    if shared:
        raise RuntimeError(
            f"cannot downgrade below 0005: {shared} image contents have several upload "
            "records (for different patients, uploaders or times), and the earlier schema "
            "allows one record per content. Downgrading would mean deleting uploads and "
            "re-filing their predictions under another patient; restore a backup taken "
            "before 0005 instead"
        )
    op.drop_constraint(op.f("fk_predictions_heatmap_ref_images"), "predictions", type_="foreignkey")
    op.alter_column(
        "predictions",
        "heatmap_ref",
        type_=sa.String(length=256),
        existing_type=sa.UUID(),
        postgresql_using="heatmap_ref::text",
    )
    op.drop_index("uq_images_idempotency", table_name="images")
    op.drop_column("images", "idempotency_key")
    op.drop_index(op.f("ix_images_sha256"), table_name="images")
    op.create_unique_constraint(op.f("uq_images_sha256"), "images", ["sha256"])
