"""webhooks: signed outbound event deliveries and every attempt

Revision ID: 0012_webhooks
Revises: 0010_interactions
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0012_webhooks"
down_revision = "0010_interactions"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "hook_deliveries",
        sa.Column("id", _str(), nullable=False),
        sa.Column("url", _str(), nullable=False),
        sa.Column("event", _str(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("state", _str(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_hook_deliveries_due", "hook_deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_hook_deliveries_created", "hook_deliveries", ["created_at"])
    op.create_table(
        "hook_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", _str(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_hook_attempts_delivery", "hook_attempts", ["delivery_id", "id"])


def downgrade() -> None:
    op.drop_table("hook_attempts")
    op.drop_table("hook_deliveries")
