"""A cascade member skipped because a member above it failed (or was superseded) records which, so its
own downstream members are stopped by the same failure however far down (``domain.cascade.decide``),
and a retry of that member resumes exactly the members it stopped.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cascade_members") as batch:
        batch.add_column(sa.Column("stopped_by", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cascade_members") as batch:
        batch.drop_column("stopped_by")
