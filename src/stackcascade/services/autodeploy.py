"""Auto Deploy declarations: show an org's declared graph, and apply a declaration (or only diff it).

The declaration owns the org's *managed* deployment webhooks (``webhooks.managed``), one per edge,
keyed by (upstream, downstream). Applying it is one write transaction: lock the org's graph, read
every deployment webhook, refuse the whole declaration when it names a stack that does not exist
(400), declares an edge that an unmanaged webhook already carries (409), or would close a cycle
together with the unmanaged edges (409, the cycle spelled out); then delete, update and create
managed webhooks and set the stack gates it gives. Unmanaged webhooks are never touched.

Roles: reading the declaration and a dry run need ``viewer`` (they show what ``/graph`` shows);
applying needs ``member``, like editing webhooks.

Each answer names the declaration it read with a *basis* (the ``ETag``): a hash of the managed edges and
the gates, everything a diff is computed against. An apply given the basis of the diff someone saw
(``If-Match``) is refused (412, nothing changed) when the declaration changed since, so what is applied
is exactly what was shown.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from stackcascade.domain import autodeploy, graph
from stackcascade.domain.autodeploy import Declaration, Diff, EdgeSpec
from stackcascade.domain.errors import Conflict, InvalidInput, PreconditionFailed
from stackcascade.domain.roles import Principal, Role
from stackcascade.domain.webhook_events import WebhookFormat
from stackcascade.services import graph_order
from stackcascade.services.context import Context
from stackcascade.store import cascades as cascade_rows
from stackcascade.store import webhooks as rows

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(slots=True)
class _Plan:
    """The diff, and the ids and names needed to carry it out."""

    diff: Diff
    stack_ids: dict[str, str]  # "project/stack" -> stack id
    webhook_ids: dict[tuple[str, str], str]  # (upstream, webhook name) -> webhook id
    basis: str  # of the declaration the diff was computed against (``_basis``)
    new_names: dict[tuple[str, str], str] = field(default_factory=dict)  # edge -> name of the webhook to create

    def document(self) -> dict[str, Any]:
        return autodeploy.diff_document(self.diff, self.new_names)


def _spec(row: Any) -> EdgeSpec:
    return EdgeSpec(
        row.upstream,
        row.downstream,
        trigger_on=row.trigger_on,
        require_approval=bool(row.require_approval),
        filters=tuple(row.filters),
        groups=tuple(row.groups),
        display_name=row.display_name,
        active=bool(row.active),
        webhook=row.name,
    )


def _current(hooks: list[Any], stacks: list[Any]) -> tuple[dict[str, Any], str]:
    """The declaration the rows hold, and its basis: a hash of it, which changes exactly when it does."""
    managed = [_spec(row) for row in hooks if row.managed]
    gates = {row.ref: bool(row.require_approval) for row in stacks}
    document = autodeploy.to_document(autodeploy.declaration_of(managed, gates))
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return document, hashlib.sha256(canonical.encode()).hexdigest()[:32]


async def show(ctx: Context, principal: Principal, org: str) -> tuple[dict[str, Any], str]:
    """The org's current declaration (its managed edges and the gates of the stacks they touch) and its basis."""
    principal.require(org, Role.VIEWER, f"organization {org}")
    async with ctx.db.read() as conn:
        hooks = await rows.deployment_webhooks(conn, org)
        stacks = await rows.org_stacks(conn, org)
    return _current(hooks, stacks)


async def apply(
    ctx: Context, principal: Principal, org: str, document: object, *, dry_run: bool, if_basis: str | None = None
) -> tuple[dict[str, Any], str]:
    """``{applied, diff}``: the changes that make the managed webhooks match ``document``, and the basis of
    the declaration they were computed against.

    A dry run computes them and changes nothing; it is refused exactly when applying would be. With
    ``if_basis``, nothing is changed unless the declaration is still the one of that basis.
    """
    principal.require(org, Role.VIEWER if dry_run else Role.MEMBER, f"organization {org}")
    declaration = autodeploy.parse_document(document)
    if dry_run:
        async with ctx.db.read() as conn:
            plan = await _plan(conn, org, declaration)
        _check_basis(org, plan.basis, if_basis)
        return {"applied": False, "diff": plan.document()}, plan.basis
    try:
        async with ctx.db.write() as conn:
            await rows.lock_graph(conn, org)
            plan = await _plan(conn, org, declaration)
            _check_basis(org, plan.basis, if_basis)
            await _carry_out(conn, org, plan, ctx.now())
            await graph_order.renumber(conn, org)  # the declaration was checked for cycles as a whole
    except IntegrityError:  # a webhook created meanwhile took a name, or a stack was deleted meanwhile
        raise Conflict(
            f"the webhooks or stacks of {org} changed while the declaration was applied; nothing was changed: "
            "apply it again"
        ) from None
    return {"applied": True, "diff": plan.document()}, plan.basis


def _check_basis(org: str, basis: str, expected: str | None) -> None:
    if expected is not None and expected != basis:
        raise PreconditionFailed(
            f"the Auto Deploy declaration of {org} changed since the diff you saw (If-Match); nothing was "
            "changed: look at the new diff and apply again"
        )


async def _plan(conn: AsyncConnection, org: str, declaration: Declaration) -> _Plan:
    stacks = await rows.org_stacks(conn, org)
    stack_ids = {row.ref: str(row.id) for row in stacks}
    unknown = [ref for ref in declaration.stacks() if ref not in stack_ids]
    if unknown:
        missing = ", ".join(f"{org}/{ref}" for ref in unknown)
        what, them = ("a stack that does", "it") if len(unknown) == 1 else ("stacks that do", "them")
        raise InvalidInput(
            f"the declaration names {what} not exist: {missing}; create {them} first or leave {them} out "
            "(nothing was changed)"
        )
    hooks = await rows.deployment_webhooks(conn, org)
    desired = declaration.edges()
    _refuse_unmanaged_overlap(org, hooks, desired)
    _refuse_cycle(org, hooks, desired)
    current = [_spec(row) for row in hooks if row.managed]
    changes = autodeploy.diff(current, desired)
    _, basis = _current(hooks, stacks)
    gates = autodeploy.gate_changes({row.ref: bool(row.require_approval) for row in stacks}, declaration.gates())
    plan = _Plan(
        diff=autodeploy.with_gates(changes, gates),
        stack_ids=stack_ids,
        webhook_ids={(row.upstream, row.name): str(row.id) for row in hooks if row.managed},
        basis=basis,
    )
    if changes.create:
        taken: dict[str, set[str]] = {}
        for scope, existing in await rows.stack_webhook_names(conn, org):
            taken.setdefault(scope, set()).add(existing)
        for edge in changes.delete:  # deleted first, in the same transaction: their names are free again
            taken.get(stack_ids[edge.upstream], set()).discard(edge.webhook)
        for edge in changes.create:
            names = taken.setdefault(stack_ids[edge.upstream], set())
            new_name = autodeploy.managed_webhook_name(edge.downstream, names)
            names.add(new_name)
            plan.new_names[edge.key] = new_name
    return plan


def _refuse_unmanaged_overlap(org: str, hooks: list[Any], desired: list[EdgeSpec]) -> None:
    """One webhook per edge: an edge an unmanaged webhook carries is not declared as well."""
    wanted = {edge.key for edge in desired}
    overlap = [row for row in hooks if not row.managed and row.active and (row.upstream, row.downstream) in wanted]
    if overlap:
        listed = "; ".join(
            f"{row.upstream} -> {row.downstream} (webhook {row.name!r} of {row.upstream})" for row in overlap
        )
        raise Conflict(
            f"the declaration declares edges of {org} that unmanaged webhooks already carry: {listed}. Delete those "
            "webhooks or leave the edges out of the declaration, so each edge fires once (nothing was changed)"
        )


def _refuse_cycle(org: str, hooks: list[Any], desired: list[EdgeSpec]) -> None:
    """The graph after the change (the active unmanaged edges and the declared ones) must stay a DAG."""
    unmanaged = {(row.upstream, row.downstream): row.name for row in hooks if not row.managed and row.active}
    cycle = graph.cycle_with(list(unmanaged), [edge.key for edge in desired])
    if cycle is None:
        return
    steps = list(itertools.pairwise(cycle))
    outside = [
        f"{up} -> {down} is webhook {unmanaged[(up, down)]!r} of {up}" for up, down in steps if (up, down) in unmanaged
    ]
    note = f" ({'; '.join(outside)}, which the declaration does not manage)" if outside else ""
    raise Conflict(
        f"the declaration would close a cycle in the deployment graph of {org}: {graph.format_cycle(cycle)}{note}; "
        "nothing was changed"
    )


async def _carry_out(conn: AsyncConnection, org: str, plan: _Plan, now: float) -> None:
    changes = plan.diff
    for edge in changes.delete:
        await rows.delete(conn, plan.webhook_ids[(edge.upstream, edge.webhook)])
    for change in changes.update:
        edge = change.after
        await rows.update(
            conn,
            plan.webhook_ids[(edge.upstream, edge.webhook)],
            trigger_on=edge.trigger_on,
            require_approval=edge.require_approval,
            filters=list(edge.filters),
            groups=list(edge.groups),
            display_name=edge.display_name,
            active=edge.active,
            modified_at=now,
        )
    for edge in changes.create:
        stack_id = plan.stack_ids[edge.upstream]
        await rows.insert(
            conn,
            id=str(uuid.uuid4()),
            org=org,
            stack_id=stack_id,
            scope=stack_id,
            name=plan.new_names[edge.key],
            display_name=edge.display_name,
            payload_url=edge.downstream,
            format=WebhookFormat.PULUMI_DEPLOYMENTS.value,
            filters=list(edge.filters),
            groups=list(edge.groups),
            active=True,
            secret=None,
            trigger_on=edge.trigger_on,
            require_approval=edge.require_approval,
            target_stack_id=plan.stack_ids[edge.downstream],
            managed=True,
            created_at=now,
            modified_at=now,
        )
    for gate in changes.gates:
        await cascade_rows.set_stack_gate(conn, plan.stack_ids[gate.stack], gate.after)
