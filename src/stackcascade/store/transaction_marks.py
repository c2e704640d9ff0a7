"""What a write transaction did that the process must act on once it has committed, and not before."""

from __future__ import annotations

from contextvars import ContextVar

graphs_changed_in_transaction: ContextVar[set[str] | None] = ContextVar("graphs_changed_in_transaction", default=None)
"""The orgs whose deployment graph the current write transaction changed (``store.orgs.graph_changed``)."""


def mark_graph_changed(org: str) -> None:
    changed = graphs_changed_in_transaction.get()
    if changed is not None:
        changed.add(org)


orgs_created_in_transaction: ContextVar[set[str] | None] = ContextVar("orgs_created_in_transaction", default=None)
"""The orgs the current write transaction created (``store.orgs.ensure``)."""


def mark_org_created(org: str) -> None:
    created = orgs_created_in_transaction.get()
    if created is not None:
        created.add(org)


cascades_behind_in_transaction: ContextVar[set[str] | None] = ContextVar("cascades_behind_in_transaction", default=None)
"""Cascades a member of which the current write transaction ended without advancing them (a deployment
superseded under ``skipIntermediateDeployments``, ``store.deployments.skip_superseded``)."""


def mark_cascade_behind(cascade_id: str) -> None:
    behind = cascades_behind_in_transaction.get()
    if behind is not None:
        behind.add(cascade_id)
