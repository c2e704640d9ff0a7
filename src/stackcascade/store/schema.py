"""Tables. One schema for SQLite and PostgreSQL; timestamps are epoch seconds (doubles)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JSONDoc = sa.JSON().with_variant(JSONB(), "postgresql")
ACTIVE_STATUSES = ("accepted", "running")
_ACTIVE_SQL = sa.text("status IN ('accepted', 'running')")
_UNDISPATCHED_SQL = sa.text("NOT dispatched")
_PENDING_SQL = sa.text("status = 'pending'")
_RUNNING_SQL = sa.text("status = 'running'")

orgs = sa.Table(
    "orgs",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("concurrency", sa.Integer, nullable=False),
    sa.Column("cascade_mode", sa.String(20), nullable=False, server_default="coalesced"),
    sa.Column("created_at", sa.Double, nullable=False),
    # One more on every change to the org's deployment graph (``store.orgs.graph_changed``): the version of
    # the planning index a process may keep for the org (``services.org_graphs``).
    sa.Column("graph_version", sa.Integer, nullable=False, server_default="0"),
)

stacks = sa.Table(
    "stacks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("org", sa.String(100), sa.ForeignKey("orgs.name"), nullable=False),
    sa.Column("project", sa.String(100), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("tags", JSONDoc, nullable=False),
    sa.Column("outputs", JSONDoc, nullable=True),
    sa.Column("outputs_updated_at", sa.Double, nullable=True),  # when ``outputs`` last changed hands
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_version", sa.Integer, nullable=False, server_default="0"),
    # Settings versions never repeat, not even after the settings were deleted and saved again.
    sa.Column("settings_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("require_approval", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.Double, nullable=False),
    # The stack's place in a topological order of the org's active deployment edges (every edge goes
    # from a lower to a higher number), kept by services.graph_order; NULL until the org is ordered.
    sa.Column("graph_order", sa.Integer, nullable=True),
    sa.UniqueConstraint("org", "project", "name", name="uq_stacks_org_project_name"),
    sa.Index("ix_stacks_org_graph_order", "org", "graph_order"),
)

deployment_settings = sa.Table(
    "deployment_settings",
    metadata,
    sa.Column("stack_id", sa.String(36), sa.ForeignKey("stacks.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("document", JSONDoc, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)

deployments = sa.Table(
    "deployments",
    metadata,
    # seq orders the queue (FIFO); id is the public identifier.
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column("stack_id", sa.String(36), sa.ForeignKey("stacks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("org", sa.String(100), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("operation", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("initiator", sa.String(20), nullable=False),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("settings", JSONDoc, nullable=False),
    sa.Column("skip_intermediate", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("runner_id", sa.String(200), nullable=True),
    # The key the runner's claim carried: a retried claim with the same key gets this lease back.
    sa.Column("claim_key", sa.String(64), nullable=True),
    sa.Column("lease_expires_at", sa.Double, nullable=True),
    sa.Column("cascade_id", sa.String(36), nullable=True),
    # Created while the org deployed per edge (or by an edge): its events fire its edges even if the org
    # has switched to coalesced since; the mode a deployment began in is the one it ends in.
    sa.Column("fires_edges", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("modified_at", sa.Double, nullable=False),
    sa.Column("started_at", sa.Double, nullable=True),
    sa.Column("finished_at", sa.Double, nullable=True),
    sa.Column("outputs", JSONDoc, nullable=True),
    sa.Column("resource_changes", JSONDoc, nullable=True),
    sa.Column("log_bytes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("log_truncated", sa.Boolean, nullable=False, server_default=sa.false()),
    # The upstream deployment whose event fired the deployment webhook that created this one.
    sa.Column("triggered_by", sa.String(36), nullable=True),
    sa.UniqueConstraint("stack_id", "version", name="uq_deployments_stack_version"),
    sa.Index("ix_deployments_status_seq", "status", "seq"),
    sa.Index("ix_deployments_org_seq", "org", "seq"),
    sa.Index("ix_deployments_stack_seq", "stack_id", "seq"),
    # The database itself guarantees one running deployment per stack.
    sa.Index(
        "uq_deployments_one_active_per_stack",
        "stack_id",
        unique=True,
        sqlite_where=_ACTIVE_SQL,
        postgresql_where=_ACTIVE_SQL,
    ),
)

events = sa.Table(
    "events",
    metadata,
    # The outbox: written in the same transaction as the change it reports.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("org", sa.String(100), nullable=False),
    sa.Column("stack_id", sa.String(36), nullable=True),
    sa.Column("deployment_id", sa.String(36), nullable=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("payload", JSONDoc, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("dispatched", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_events_org_id", "org", "id"),
    # The webhook dispatcher's work list: events not yet fanned out to webhooks.
    sa.Index("ix_events_undispatched", "id", sqlite_where=_UNDISPATCHED_SQL, postgresql_where=_UNDISPATCHED_SQL),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("org", sa.String(100), nullable=True),
    sa.Column("role", sa.String(20), nullable=True),
    sa.Column("deployment_id", sa.String(36), nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=True),
)

deployment_steps = sa.Table(
    "deployment_steps",
    metadata,
    sa.Column("deployment_id", sa.String(36), sa.ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", sa.Double, nullable=True),
    sa.Column("finished_at", sa.Double, nullable=True),
)

deployment_logs = sa.Table(
    "deployment_logs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment_id", sa.String(36), sa.ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    # seq is the runner's own numbering: a retried append carries the same seq and is ignored.
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("line", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.UniqueConstraint("deployment_id", "step", "seq", name="uq_deployment_logs_deployment_step_seq"),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("org", sa.String(100), sa.ForeignKey("orgs.name"), nullable=False),
    # NULL for an organization webhook; the stack for a stack webhook.
    sa.Column("stack_id", sa.String(36), sa.ForeignKey("stacks.id", ondelete="CASCADE"), nullable=True),
    # "" for organization webhooks, else the stack id: names are unique per scope (NULLs never collide).
    sa.Column("scope", sa.String(36), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("payload_url", sa.Text, nullable=False),
    sa.Column("format", sa.String(30), nullable=False),
    sa.Column("filters", JSONDoc, nullable=False),
    sa.Column("groups", JSONDoc, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("secret", sa.Text, nullable=True),  # Fernet ciphertext
    # pulumi_deployments webhooks: the downstream stack (the deployment edge stack_id -> target_stack_id).
    sa.Column("target_stack_id", sa.String(36), sa.ForeignKey("stacks.id", ondelete="CASCADE"), nullable=True),
    # Deployment edges only: fire on every match, or only when the upstream's outputs changed; gate.
    sa.Column("trigger_on", sa.String(20), nullable=False, server_default="always"),
    sa.Column("require_approval", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("managed", sa.Boolean, nullable=False, server_default=sa.false()),  # by an Auto Deploy declaration
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("modified_at", sa.Double, nullable=False),
    sa.UniqueConstraint("org", "scope", "name", name="uq_webhooks_org_scope_name"),
    sa.Index("ix_webhooks_stack_id", "stack_id"),
    sa.Index("ix_webhooks_target_stack_id", "target_stack_id"),
)

# The recent changes to each org's deployment graph, one row per ``orgs.graph_version`` step: whose
# outgoing edges changed (NULL: any part of the graph may have; a deleted stack logs itself and its
# upstreams). A process holding
# an indexed graph re-reads only those stacks' edges; rows older than the newest 500 are pruned.
graph_changes = sa.Table(
    "graph_changes",
    metadata,
    sa.Column("org", sa.String(100), sa.ForeignKey("orgs.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("stack_id", sa.String(36), nullable=True),
)

# One row per (event, webhook) to deliver over HTTP, and per ping or redelivery; retried until it
# succeeds or the retry policy gives up.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("webhook_id", sa.String(36), sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event_id", sa.Integer, nullable=True),
    sa.Column("event", sa.String(40), nullable=False),  # the event name, or "ping"
    sa.Column("kind", sa.String(40), nullable=False),  # the Pulumi-Webhook-Kind header
    sa.Column("body", sa.Text, nullable=False),  # the exact bytes sent (UTF-8), kept for redelivery
    sa.Column("status", sa.String(20), nullable=False),  # pending | succeeded | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Double, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("finished_at", sa.Double, nullable=True),
    sa.Index("ix_webhook_deliveries_due", "next_attempt_at", sqlite_where=_PENDING_SQL, postgresql_where=_PENDING_SQL),
    sa.Index("ix_webhook_deliveries_webhook_id", "webhook_id"),
)

# Every HTTP attempt, in the shape of the contract's WebhookDelivery.
webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column("delivery_id", sa.String(36), sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False),
    sa.Column("webhook_id", sa.String(36), sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("sent_at", sa.Double, nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("request_url", sa.Text, nullable=False),
    sa.Column("request_headers", JSONDoc, nullable=False),
    sa.Column("response_code", sa.Integer, nullable=False),  # 0 when no response arrived
    sa.Column("response_headers", JSONDoc, nullable=False),
    sa.Column("response_body", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_webhook_attempts_webhook_seq", "webhook_id", "seq"),
)

# A deployment edge fires at most once per upstream deployment (or external event).
webhook_firings = sa.Table(
    "webhook_firings",
    metadata,
    sa.Column("webhook_id", sa.String(36), sa.ForeignKey("webhooks.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("source", sa.String(60), primary_key=True),  # the upstream deployment id, or "event:<id>"
    sa.Column("deployment_id", sa.String(36), nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
)

# What one upstream change set off: the plan (members, waves, edges among them) is fixed at the start.
cascades = sa.Table(
    "cascades",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("org", sa.String(100), nullable=False),
    sa.Column("root", sa.String(201), nullable=False),  # "project/stack"
    sa.Column("root_deployment_id", sa.String(36), nullable=True),
    sa.Column("operation", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # running | succeeded | failed
    sa.Column("plan", JSONDoc, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("finished_at", sa.Double, nullable=True),
    sa.Index("ix_cascades_org_created_at", "org", "created_at"),
    sa.Index("ix_cascades_running", "status", sqlite_where=_RUNNING_SQL, postgresql_where=_RUNNING_SQL),
)

cascade_members = sa.Table(
    "cascade_members",
    metadata,
    sa.Column("cascade_id", sa.String(36), sa.ForeignKey("cascades.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("stack", sa.String(201), primary_key=True),  # "project/stack"
    sa.Column("stack_id", sa.String(36), nullable=True),  # NULL once the stack was deleted
    sa.Column("wave", sa.Integer, nullable=False),
    sa.Column("status", sa.String(30), nullable=False),  # domain.cascade.MemberStatus
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("deployment_id", sa.String(36), nullable=True),
    sa.Column("outputs_changed", sa.Boolean, nullable=True),
    sa.Column("approved_by", sa.String(200), nullable=True),
    sa.Column("modified_at", sa.Double, nullable=False),
    # [[stack, "failed" | "superseded"], ...]: the members that stopped this skipped one (domain.cascade.Stops)
    sa.Column("stopped_by", JSONDoc, nullable=True),
    sa.Index("ix_cascade_members_deployment_id", "deployment_id"),
)
