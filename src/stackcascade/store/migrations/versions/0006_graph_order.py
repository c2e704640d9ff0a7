"""Stacks carry their place in a topological order of the org's deployment graph (fast cycle checks).

NULL means the org has not been ordered yet: the first edge change orders the whole org.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stacks") as batch:
        batch.add_column(sa.Column("graph_order", sa.Integer(), nullable=True))
    op.create_index("ix_stacks_org_graph_order", "stacks", ["org", "graph_order"])


def downgrade() -> None:
    op.drop_index("ix_stacks_org_graph_order", table_name="stacks")
    with op.batch_alter_table("stacks") as batch:
        batch.drop_column("graph_order")
