"""Stacks remember when their outputs were last stored (the console shows their age).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stacks") as batch:
        batch.add_column(sa.Column("outputs_updated_at", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stacks") as batch:
        batch.drop_column("outputs_updated_at")
