"""takeover: who took a session over from its agent, and why an agent asked for a person

Revision ID: 0013_takeover
Revises: 0010_interactions
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0013_takeover"
down_revision = "0012_webhooks"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("taken_over_by", _str(), nullable=True))
        batch.add_column(sa.Column("handoff_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("handoff_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("handoff_at")
        batch.drop_column("handoff_reason")
        batch.drop_column("taken_over_by")
