"""interactions: an agent's structured requests to people, and every answer attempt

Revision ID: 0010_interactions
Revises: 0009_files
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010_interactions"
down_revision = "0009_files"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "interactions",
        sa.Column("id", _str(), nullable=False),
        sa.Column("session_id", _str(), nullable=False),
        sa.Column("agent", _str(), nullable=False),
        sa.Column("turn_id", _str(), nullable=False),
        sa.Column("kind", _str(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=True),
        sa.Column("responders", sa.JSON(), nullable=True),
        sa.Column("state", _str(), nullable=False),
        sa.Column("provider", _str(), nullable=False),
        sa.Column("account", _str(), nullable=False),
        sa.Column("conversation", _str(), nullable=False),
        sa.Column("thread", _str(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("answer_turn_id", _str(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_interactions_state_created", "interactions", ["state", "created_at"])
    op.create_index("ix_interactions_session", "interactions", ["session_id", "state"])
    op.create_index("ix_interactions_expires", "interactions", ["state", "expires_at"])
    op.create_table(
        "interaction_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("interaction_id", _str(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("via", _str(), nullable=False),
        sa.Column("by_provider", _str(), nullable=True),
        sa.Column("by_id", _str(), nullable=False),
        sa.Column("by_name", _str(), nullable=False),
        sa.Column("option", _str(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("reason", _str(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_interaction_attempts_interaction", "interaction_attempts",
                    ["interaction_id", "id"])
    op.create_index("uq_interaction_attempts_accepted", "interaction_attempts",
                    ["interaction_id"], unique=True, sqlite_where=sa.text("accepted"),
                    postgresql_where=sa.text("accepted"))


def downgrade() -> None:
    op.drop_table("interaction_attempts")
    op.drop_table("interactions")
