"""index the sessions a scope was transferred from

Opening a session looks for an earlier session of its scope that was transferred to its agent;
without this index that lookup scanned the whole sessions table once per new session.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_WHERE = sa.text("transferred_to IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_sessions_transferred", "sessions", ["scope_key", "transferred_to"],
                    sqlite_where=_WHERE, postgresql_where=_WHERE)


def downgrade() -> None:
    op.drop_index("ix_sessions_transferred", table_name="sessions")
