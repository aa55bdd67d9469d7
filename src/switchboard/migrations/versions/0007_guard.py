"""pairings and guard counters

`pairings` keeps each sender's pairing on an account (pending code, told to wait, approved,
denied); `guard_counters` the windows of rate limits, loop guards and wrong pairing codes,
shared by every process on the database.

Revision ID: 0007_guard
Revises: 0006_operators
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007_guard"
down_revision = "0006_operators"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "pairings",
        sa.Column("account", text(), nullable=False),
        sa.Column("sender", text(), nullable=False),
        sa.Column("sender_name", text(), nullable=False),
        sa.Column("status", text(), nullable=False),
        sa.Column("code", text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", text(), nullable=True),
        sa.Column("turn_id", text(), nullable=True),
        sa.Column("reply", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("account", "sender"),
    )
    op.create_index("ix_pairings_code", "pairings", ["code"])
    op.create_index("ix_pairings_account_status", "pairings", ["account", "status"])
    op.create_table(
        "guard_counters",
        sa.Column("key", text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("guard_counters")
    op.drop_index("ix_pairings_account_status", table_name="pairings")
    op.drop_index("ix_pairings_code", table_name="pairings")
    op.drop_table("pairings")
