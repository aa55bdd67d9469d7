"""interactions.settled_at: when a process took on showing the decision at the provider

Revision ID: 0014_interactions_more
Revises: 0010_interactions
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_interactions_more"
down_revision = "0013_takeover"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("interactions") as batch:
        batch.add_column(sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("interactions") as batch:
        batch.drop_column("settled_at")
