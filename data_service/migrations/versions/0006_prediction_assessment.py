"""predictions: the assessment, its reasons and checks; no label on what was not assessable

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 06:30:00.000000

Every prediction now says whether its image could be assessed (`assessable`,
`indeterminate`, `not_assessable`), why (reason codes, in order) and the measures behind
that (the checks). A not-assessable image gets no label and no probability of a label; its
class probabilities are still stored, for audit. Rows stored before keep their label and
read as "not recorded" (assessment, reasons and checks NULL); the constraints hold for them
as they are, so the upgrade changes no existing row.

The downgrade is only possible while no stored prediction lacks a label: the earlier schema
requires one, and inventing a verdict for an image that was not assessable is not an
option. It refuses, naming how many, rather than delete them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINTS = {
    "assessment_known": "assessment IN ('assessable', 'indeterminate', 'not_assessable')",
    "label_unless_not_assessable": (
        "(label IS NULL) = coalesce(assessment = 'not_assessable', false)"
    ),
    "probability_of_label": "(probability IS NULL) = (label IS NULL)",
    "reasons_with_assessment": "(reasons IS NULL) = (assessment IS NULL)",
}


def upgrade() -> None:
    op.add_column("predictions", sa.Column("assessment", sa.String(length=16), nullable=True))
    op.add_column(
        "predictions",
        sa.Column("reasons", postgresql.ARRAY(sa.String(length=32)), nullable=True),
    )
    op.add_column(
        "predictions",
        sa.Column("checks", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.alter_column("predictions", "label", existing_type=sa.String(length=32), nullable=True)
    op.alter_column("predictions", "probability", existing_type=sa.Float(), nullable=True)
    for name, condition in CONSTRAINTS.items():
        op.create_check_constraint(op.f(f"ck_predictions_{name}"), "predictions", condition)
    # The review queue's first group, read along indexes: undecided predictions, and those a
    # reviewer disagreed with.
    op.create_index(
        "ix_predictions_indeterminate_created_at_id",
        "predictions",
        [sa.text("created_at DESC"), sa.text("id DESC")],
        postgresql_where=sa.text("assessment = 'indeterminate'"),
    )
    op.create_index(
        "ix_reviews_current_disagreements",
        "reviews",
        ["prediction_id"],
        postgresql_where=sa.text("is_current AND verdict = 'disagree'"),
    )


def downgrade() -> None:
    unlabelled = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM predictions WHERE label IS NULL"))
        .scalar_one()
    )
    if unlabelled:
        raise RuntimeError(
            f"cannot downgrade below 0006: {unlabelled} predictions were not assessable and "
            "have no label, which the earlier schema requires. Giving them one would state a "
            "verdict the model refused; restore a backup taken before 0006 instead"
        )
    op.drop_index("ix_reviews_current_disagreements", table_name="reviews")
    op.drop_index("ix_predictions_indeterminate_created_at_id", table_name="predictions")
    for name in CONSTRAINTS:
        op.drop_constraint(op.f(f"ck_predictions_{name}"), "predictions", type_="check")
    op.alter_column("predictions", "probability", existing_type=sa.Float(), nullable=False)
    op.alter_column("predictions", "label", existing_type=sa.String(length=32), nullable=False)
    op.drop_column("predictions", "checks")
    op.drop_column("predictions", "reasons")
    op.drop_column("predictions", "assessment")
