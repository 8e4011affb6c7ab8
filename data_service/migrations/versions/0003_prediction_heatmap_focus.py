"""prediction heatmap focus

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 22:05:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # Predictions stored before have no summary; the assistant says so for them.
    op.add_column(
        "predictions",
        sa.Column("heatmap_focus", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("predictions", "heatmap_focus")
