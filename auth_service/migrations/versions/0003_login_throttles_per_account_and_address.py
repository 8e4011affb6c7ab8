"""login throttles per account and address; known login addresses; token generations

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 05:40:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "known_login_addresses",
        sa.Column("account", sa.String(length=100), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", "address", name=op.f("pk_known_login_addresses")),
    )
    op.add_column(
        "users",
        sa.Column("token_generation", sa.Integer(), server_default="0", nullable=False),
    )
    # An `account:` row used to be a hard lock of up to 15 minutes for every address; it now
    # means the short account-wide delay. Old locks are dropped rather than reinterpreted.
    op.execute("DELETE FROM login_throttles WHERE key LIKE 'account:%'")


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DELETE FROM login_throttles WHERE key LIKE 'account-address:%'")
    op.drop_column("users", "token_generation")
    op.drop_table("known_login_addresses")
