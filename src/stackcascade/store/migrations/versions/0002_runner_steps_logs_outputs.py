"""Runner: deployment steps, logs, outputs and resource changes.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("outputs", _JSON, nullable=True))
        batch.add_column(sa.Column("resource_changes", _JSON, nullable=True))
        batch.add_column(sa.Column("log_bytes", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("log_truncated", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "deployment_steps",
        sa.Column("deployment_id", sa.String(36), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_deployment_steps_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("deployment_id", "idx", name=op.f("pk_deployment_steps")),
    )
    op.create_table(
        "deployment_logs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(36), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_deployment_logs_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_logs")),
        sa.UniqueConstraint("deployment_id", "step", "seq", name="uq_deployment_logs_deployment_step_seq"),
    )


def downgrade() -> None:
    op.drop_table("deployment_logs")
    op.drop_table("deployment_steps")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("log_truncated")
        batch.drop_column("log_bytes")
        batch.drop_column("resource_changes")
        batch.drop_column("outputs")
