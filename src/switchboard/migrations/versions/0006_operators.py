"""operators kept in the database: limited to agents, rotated, one per name

`switchboard operators add|rotate|revoke` and `/api/operators` keep operators in
`operator_tokens` beside the admin `serve` generates on first start.

Revision ID: 0006_operators
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_operators"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("operator_tokens", sa.Column("agents", sa.JSON(), nullable=True))
    op.add_column("operator_tokens",
                  sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_operator_tokens_name", "operator_tokens", ["name"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_operator_tokens_name", table_name="operator_tokens")
    with op.batch_alter_table("operator_tokens") as batch:
        batch.drop_column("rotated_at")
        batch.drop_column("agents")
