"""Orgs count the changes to their deployment graph and log the recent ones, so a process can keep a
planning index per org and bring it up to date from the log.

Every transaction that changes an org's stack webhooks or deletes one of its stacks adds one
(``store.orgs.graph_changed``); a cached index built at another number is stale.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orgs") as batch:
        batch.add_column(sa.Column("graph_version", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "graph_changes",
        sa.Column("org", sa.String(100), sa.ForeignKey("orgs.name"), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("stack_id", sa.String(36), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("graph_changes")
    with op.batch_alter_table("orgs") as batch:
        batch.drop_column("graph_version")
