"""audit events: refuse TRUNCATE as well

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 05:30:00.000000

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Row triggers do not fire on TRUNCATE; a statement trigger does, and it stops the
    # table's owner too, not only roles without the TRUNCATE privilege.
    op.execute(
        """
        CREATE FUNCTION audit_events_no_truncate() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION 'audit events are append-only: TRUNCATE is refused';
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_no_truncate()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_events_no_truncate ON audit_events")
    op.execute("DROP FUNCTION audit_events_no_truncate()")
