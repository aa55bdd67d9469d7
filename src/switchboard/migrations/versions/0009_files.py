"""files of turns: what people sent and what agents made

Metadata of every file (the bytes are blobs of the file store, named by their SHA-256), with
the delivery state of the agent's files.

Revision ID: 0009_files
Revises: 0003
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009_files"
down_revision = "0006_operators"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString()
    op.create_table(
        "files",
        sa.Column("id", text, nullable=False),
        sa.Column("turn_id", text, nullable=False),
        sa.Column("session_id", text, nullable=True),
        sa.Column("provider", text, nullable=False),
        sa.Column("account", text, nullable=False),
        sa.Column("direction", text, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", text, nullable=False),
        sa.Column("type", text, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", text, nullable=True),
        sa.Column("status", text, nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("ref", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_file_id", text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_files_turn", "files", ["turn_id"])
    op.create_index("ix_files_session", "files", ["session_id"])
    op.create_index("ix_files_sha256", "files", ["sha256"])
    op.create_index("ix_files_created", "files", ["created_at"])
    op.create_index("ix_files_due", "files", ["direction", "status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("files")
