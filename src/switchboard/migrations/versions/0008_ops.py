"""when a turn's reply was delivered

The console shows the time from receipt to delivery (not only the agent's), so the delivery's
own time is kept on the turn.

Revision ID: 0008_ops
Revises: 0007_guard
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_ops"
down_revision = "0007_guard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("delivered_at")
