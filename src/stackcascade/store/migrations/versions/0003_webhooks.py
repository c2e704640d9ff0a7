"""Webhooks: stack and org webhooks, deliveries and their attempts, deployment-edge firings.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_UNDISPATCHED = sa.text("NOT dispatched")
_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("triggered_by", sa.String(36), nullable=True))
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("dispatched", sa.Boolean(), server_default=sa.false(), nullable=False))
    # Events recorded before webhooks existed have nobody to go to.
    op.execute(sa.text("UPDATE events SET dispatched = true"))
    op.create_index(
        "ix_events_undispatched", "events", ["id"], sqlite_where=_UNDISPATCHED, postgresql_where=_UNDISPATCHED
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org", sa.String(100), nullable=False),
        sa.Column("stack_id", sa.String(36), nullable=True),
        sa.Column("scope", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("payload_url", sa.Text(), nullable=False),
        sa.Column("format", sa.String(30), nullable=False),
        sa.Column("filters", _JSON, nullable=False),
        sa.Column("groups", _JSON, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("target_stack_id", sa.String(36), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("modified_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["org"], ["orgs.name"], name=op.f("fk_webhooks_org_orgs")),
        sa.ForeignKeyConstraint(
            ["stack_id"], ["stacks.id"], name=op.f("fk_webhooks_stack_id_stacks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["target_stack_id"], ["stacks.id"], name=op.f("fk_webhooks_target_stack_id_stacks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
        sa.UniqueConstraint("org", "scope", "name", name="uq_webhooks_org_scope_name"),
    )
    op.create_index("ix_webhooks_stack_id", "webhooks", ["stack_id"])
    op.create_index("ix_webhooks_target_stack_id", "webhooks", ["target_stack_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("webhook_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_webhook_deliveries_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )
    op.create_index("ix_webhook_deliveries_webhook_id", "webhook_deliveries", ["webhook_id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.Column("webhook_id", sa.String(36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.Double(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("request_url", sa.Text(), nullable=False),
        sa.Column("request_headers", _JSON, nullable=False),
        sa.Column("response_code", sa.Integer(), nullable=False),
        sa.Column("response_headers", _JSON, nullable=False),
        sa.Column("response_body", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.id"], name=op.f("fk_webhook_attempts_webhook_id_webhooks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_webhook_attempts")),
        sa.UniqueConstraint("id", name=op.f("uq_webhook_attempts_id")),
    )
    op.create_index("ix_webhook_attempts_webhook_seq", "webhook_attempts", ["webhook_id", "seq"])
    op.create_table(
        "webhook_firings",
        sa.Column("webhook_id", sa.String(36), nullable=False),
        sa.Column("source", sa.String(60), nullable=False),
        sa.Column("deployment_id", sa.String(36), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.id"], name=op.f("fk_webhook_firings_webhook_id_webhooks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("webhook_id", "source", name=op.f("pk_webhook_firings")),
    )


def downgrade() -> None:
    op.drop_table("webhook_firings")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.drop_index("ix_events_undispatched", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("dispatched")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("triggered_by")
