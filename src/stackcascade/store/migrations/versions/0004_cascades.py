"""Cascades: cascades and their members; edge options on webhooks; org cascade mode; stack approval gates.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    with op.batch_alter_table("orgs") as batch:
        batch.add_column(sa.Column("cascade_mode", sa.String(20), server_default="coalesced", nullable=False))
    with op.batch_alter_table("stacks") as batch:
        batch.add_column(sa.Column("require_approval", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("trigger_on", sa.String(20), server_default="always", nullable=False))
        batch.add_column(sa.Column("require_approval", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("managed", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "cascades",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org", sa.String(100), nullable=False),
        sa.Column("root", sa.String(201), nullable=False),
        sa.Column("root_deployment_id", sa.String(36), nullable=True),
        sa.Column("operation", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("plan", _JSON, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cascades")),
    )
    op.create_index("ix_cascades_org_created_at", "cascades", ["org", "created_at"])
    op.create_index("ix_cascades_running", "cascades", ["status"], sqlite_where=_RUNNING, postgresql_where=_RUNNING)
    op.create_table(
        "cascade_members",
        sa.Column("cascade_id", sa.String(36), nullable=False),
        sa.Column("stack", sa.String(201), nullable=False),
        sa.Column("stack_id", sa.String(36), nullable=True),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("deployment_id", sa.String(36), nullable=True),
        sa.Column("outputs_changed", sa.Boolean(), nullable=True),
        sa.Column("approved_by", sa.String(200), nullable=True),
        sa.Column("modified_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cascade_id"], ["cascades.id"], name=op.f("fk_cascade_members_cascade_id_cascades"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("cascade_id", "stack", name=op.f("pk_cascade_members")),
    )
    op.create_index("ix_cascade_members_deployment_id", "cascade_members", ["deployment_id"])


def downgrade() -> None:
    op.drop_table("cascade_members")
    op.drop_table("cascades")
    with op.batch_alter_table("webhooks") as batch:
        batch.drop_column("managed")
        batch.drop_column("require_approval")
        batch.drop_column("trigger_on")
    with op.batch_alter_table("stacks") as batch:
        batch.drop_column("require_approval")
    with op.batch_alter_table("orgs") as batch:
        batch.drop_column("cascade_mode")
