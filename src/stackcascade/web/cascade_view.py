"""A cascade as a person reads it: members in waves with a status in words, why each stands where it
does, which edges fired, and one sentence that says where the whole cascade is.

Pure (rows in, views out), so the wording can be checked without a server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stackcascade.domain.cascade import TERMINAL, MemberStatus, Plan
from stackcascade.services.cascade_edges import EdgeState, edge_states
from stackcascade.services.plan_documents import plan_of

_TERMINAL_STATUSES = {status.value for status in TERMINAL}
# The order member counts are told in: what went wrong and what needs a person first.
COUNT_ORDER = ("failed", "awaiting-approval", "running", "queued", "waiting", "succeeded", "skipped")


@dataclass(frozen=True, slots=True)
class MemberView:
    stack: str  # "project/stack"
    project: str
    name: str
    wave: int
    status: str  # a member status, or the deployment's "accepted"/"running" while it runs
    reason: str | None  # why it is skipped, failed or waiting: what a person must read
    note: str | None  # a side remark: started the cascade, approved by ...
    deployment_id: str | None
    version: int | None
    operation: str | None
    started_at: float | None
    finished_at: float | None
    approved_by: str | None
    is_root: bool
    stack_exists: bool  # False once the stack was deleted: no links, no retry

    @property
    def awaits_approval(self) -> bool:
        return self.status == MemberStatus.AWAITING_APPROVAL.value

    @property
    def retryable(self) -> bool:
        return self.status == MemberStatus.FAILED.value and self.stack_exists


@dataclass(frozen=True, slots=True)
class EdgeView:
    upstream: str
    downstream: str
    listens_to: str
    trigger_on: str
    require_approval: bool
    state: str  # fired | did not fire | pending
    why: str | None


@dataclass(frozen=True, slots=True)
class CascadeView:
    id: str
    root: str
    operation: str
    status: str
    headline: str
    waves: list[list[MemberView]]
    edges: list[EdgeView]
    counts: Counter[str]
    external_events: tuple[str, ...]
    created_at: float
    finished_at: float | None
    root_deployment_id: str | None

    @property
    def members(self) -> list[MemberView]:
        return [member for wave in self.waves for member in wave]

    @property
    def root_member(self) -> MemberView | None:
        return next((member for member in self.members if member.is_root), None)

    @property
    def actionable(self) -> bool:
        return any(m.awaits_approval or m.retryable for m in self.members)


def listing(names: Iterable[str], limit: int = 3) -> str:
    """``a``, ``a and b``, ``a, b and c``, ``a, b, c and 2 more``."""
    items = list(names)
    if len(items) > limit:
        return f"{', '.join(items[:limit])} and {len(items) - limit} more"
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def shown_status(member_status: str, deployment_status: str | None) -> str:
    """A queued member whose deployment a runner took is shown as running (or starting)."""
    if member_status == MemberStatus.QUEUED.value and deployment_status in ("accepted", "running"):
        return deployment_status
    return member_status


def count_summary(counts: Mapping[str, int], label: Any) -> str:
    """``3 succeeded · 1 awaiting approval · 1 skipped``, most urgent first."""
    known = [status for status in COUNT_ORDER if counts.get(status)]
    rest = sorted(status for status in counts if status not in COUNT_ORDER and counts[status])
    return " · ".join(f"{counts[status]} {label(status)}" for status in known + rest)


def build(row: Any, members: list[Any]) -> CascadeView:
    plan = plan_of(row.plan)
    external = tuple(row.plan.get("rootEvents") or ())
    by_stack = {member.stack: member for member in members}
    views = [_member_view(plan, member, by_stack, external) for member in members]
    waves: list[list[MemberView]] = [[] for _ in plan.waves]
    for view in views:
        waves[view.wave].append(view)
    for wave in waves:
        wave.sort(key=lambda view: view.stack)
    counts = Counter(view.status if view.status != "accepted" else "running" for view in views)
    return CascadeView(
        id=row.id,
        root=row.root,
        operation=row.operation,
        status=row.status,
        headline=headline(row.status, views),
        waves=waves,
        edges=[_edge_view(state) for state in edge_states(row, members)],
        counts=counts,
        external_events=external,
        created_at=row.created_at,
        finished_at=row.finished_at,
        root_deployment_id=row.root_deployment_id,
    )


def _member_view(plan: Plan, member: Any, by_stack: Mapping[str, Any], external: tuple[str, ...]) -> MemberView:
    status = shown_status(member.status, member.deployment_status)
    project, _, name = member.stack.partition("/")
    is_root = member.stack == plan.root
    reason: str | None = None
    note: str | None = None
    if status == MemberStatus.WAITING.value:
        pending = [up for up in plan.incoming.get(member.stack, {}) if by_stack[up].status not in _TERMINAL_STATUSES]
        reason = f"waits for {listing(pending)} to finish" if pending else "about to be decided"
    elif status == MemberStatus.QUEUED.value:
        reason = _queued_reason(member)
    elif status == MemberStatus.AWAITING_APPROVAL.value:
        reason = member.reason or f"{member.stack} requires approval"
    elif status in (MemberStatus.FAILED.value, MemberStatus.SKIPPED.value):
        reason = member.reason or member.deployment_reason
    if is_root:
        if member.deployment_id is None:
            events = ", ".join(external) or "an update"
            note = f"updated outside stackcascade ({events}); this started the cascade"
        else:
            note = "its deployment started the cascade"
    elif member.approved_by:
        note = f"approved by {member.approved_by}"
    return MemberView(
        stack=member.stack,
        project=project,
        name=name,
        wave=int(member.wave),
        status=status,
        reason=reason,
        note=note,
        deployment_id=member.deployment_id,
        version=member.version,
        operation=member.operation,
        started_at=member.started_at,
        finished_at=member.finished_at,
        approved_by=member.approved_by,
        is_root=is_root,
        stack_exists=member.stack_id is not None,
    )


def _queued_reason(member: Any) -> str:
    """A paused stack or organization holds a queued deployment back, whatever runners are free."""
    if member.stack_paused:
        return "queued: the stack is paused; it runs once the stack is resumed"
    if member.org_paused:
        return "queued: the organization is paused; it runs once the organization is resumed"
    return "queued: runs when a runner is free and the stack's earlier deployments are done"


def _edge_view(state: EdgeState) -> EdgeView:
    edge = state.edge
    listens = ", ".join([*edge.filters, *(f"group {group}" for group in edge.groups)]) or "every event"
    return EdgeView(
        upstream=edge.upstream,
        downstream=edge.downstream,
        listens_to=listens,
        trigger_on=edge.trigger_on.value,
        require_approval=edge.require_approval,
        state="pending" if state.fired is None else "fired" if state.fired else "did not fire",
        why=state.why,
    )


def headline(status: str, members: list[MemberView]) -> str:
    """One sentence a newcomer reads first: what is waiting, what failed and why, or that all is done."""
    by: dict[str, list[str]] = {}
    for member in members:
        key = "running" if member.status == "accepted" else member.status
        by.setdefault(key, []).append(member.stack)
    failed, skipped = by.get("failed", []), by.get("skipped", [])
    if status == "succeeded":
        deployed = len(by.get("succeeded", []))
        text = f"Succeeded: {'all ' if not skipped else ''}{plural(deployed, 'stack')} deployed"
        return text + (f", {len(skipped)} skipped" if skipped else "")
    if status == "failed":
        parts = [f"{listing(failed)} failed"] + ([f"{plural(len(skipped), 'stack')} skipped"] if skipped else [])
        return "Failed: " + "; ".join(parts)
    parts: list[str] = []
    if by.get("awaiting-approval"):
        parts.append(f"Waiting for approval of {listing(by['awaiting-approval'])}")
    if by.get("running"):
        parts.append(f"{'Running' if not parts else 'running'} {listing(by['running'])}")
    # The parts below start with a stack name or a number, which keep their case.
    if by.get("queued"):
        parts.append(f"{listing(by['queued'])} queued")
    if failed:
        parts.append(f"{listing(failed)} failed")
    if by.get("waiting"):
        parts.append(f"{plural(len(by['waiting']), 'stack')} still to come")
    return "; ".join(parts) or "Running"
