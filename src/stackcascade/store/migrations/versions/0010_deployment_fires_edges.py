"""A deployment created while its org deployed per edge (or fired by an edge) records it, so its events
fire its edges even when the org switches to coalesced before they are dispatched: a deployment ends in
the mode it began in, as a cascade does.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("fires_edges", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("fires_edges")
