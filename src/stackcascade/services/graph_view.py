"""What the console's graph page draws: every stack's state right now, running cascades included.

A node shows its newest deployment, except while a running cascade holds the stack back: then it
shows that the stack waits for its upstreams or for an approval, which no deployment row says yet.
One read transaction, so nodes, edges and cascades are one consistent picture.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from stackcascade.domain.cascade import MemberStatus
from stackcascade.domain.errors import NotFound
from stackcascade.domain.roles import Principal, Role
from stackcascade.services.context import Context
from stackcascade.store import cascades as cascade_rows
from stackcascade.store import overview as overview_rows

_ACTIVE_DEPLOYMENT = frozenset({"not-started", "accepted", "running"})
_SHOWN_MEMBER_STATES = frozenset({MemberStatus.WAITING, MemberStatus.SKIPPED, MemberStatus.FAILED})
_FINISHED_MEMBER = frozenset(s.value for s in (MemberStatus.SUCCEEDED, MemberStatus.FAILED, MemberStatus.SKIPPED))


@dataclass(frozen=True, slots=True)
class Node:
    stack: str  # "project/stack"
    status: str | None  # a deployment status, "waiting"/"awaiting-approval" in a cascade, None: never deployed
    paused: bool
    require_approval: bool
    cascade_id: str | None  # the newest running cascade this stack is a member of


@dataclass(frozen=True, slots=True)
class Edge:
    upstream: str
    downstream: str
    filters: tuple[str, ...]
    groups: tuple[str, ...]
    trigger_on: str
    require_approval: bool


@dataclass(frozen=True, slots=True)
class RunningCascade:
    id: str
    root: str
    operation: str
    members: int
    finished: int
    awaiting: tuple[str, ...]  # members waiting for an approval


@dataclass(frozen=True, slots=True)
class GraphView:
    org: str
    nodes: list[Node]
    edges: list[Edge]
    cascades: list[RunningCascade]

    @property
    def shape(self) -> str:
        """Changes exactly when the drawing must: a stack or an edge added, removed or changed."""
        document = [[n.stack for n in self.nodes], [list(_edge_key(e)) for e in self.edges]]
        return hashlib.sha256(json.dumps(document).encode()).hexdigest()[:16]


def _edge_key(edge: Edge) -> tuple[Any, ...]:
    return (edge.upstream, edge.downstream, edge.filters, edge.groups, edge.trigger_on, edge.require_approval)


def shown_status(last: str | None, member: str | None) -> str | None:
    """What a node says: a wait for an approval first, then a deployment under way, then where the
    stack stands in a running cascade (waiting for upstreams, or skipped or failed in it: not how some
    earlier deployment ended), else how the newest deployment ended."""
    if member == MemberStatus.AWAITING_APPROVAL:
        return member
    if last in _ACTIVE_DEPLOYMENT:
        return last
    if member in _SHOWN_MEMBER_STATES:
        return member
    return last


async def load(ctx: Context, principal: Principal, org: str) -> GraphView:
    principal.require(org, Role.VIEWER, f"organization {org!r}")
    async with ctx.db.read() as conn:
        if await overview_rows.org_row(conn, org) is None:
            raise NotFound(f"organization {org!r} not found")
        nodes = await cascade_rows.graph_nodes(conn, org)
        specs = await cascade_rows.edge_specs(conn, org)
        # Every running cascade, however many newer ones finished since: an old one may await an approval.
        running_rows = await cascade_rows.running_of_org(conn, org)
        by_cascade: dict[str, list[Any]] = {row.id: [] for row in running_rows}
        for member in await cascade_rows.members_of(conn, list(by_cascade)):
            by_cascade[member.cascade_id].append(member)
        running = [(row, by_cascade[row.id]) for row in running_rows]
    membership: dict[str, tuple[str, str]] = {}  # stack -> (member status, cascade id), newest cascade first
    for row, members in running:
        for member in members:
            membership.setdefault(member.stack, (member.status, row.id))
    return GraphView(
        org=org,
        nodes=[_node(row, membership.get(row.stack)) for row in nodes],
        edges=sorted((_edge(spec) for spec in specs), key=_edge_key),
        cascades=[_running(row, members) for row, members in running],
    )


def _node(row: Any, member: tuple[str, str] | None) -> Node:
    return Node(
        stack=row.stack,
        status=shown_status(row.last_status, member[0] if member else None),
        paused=bool(row.paused),
        require_approval=bool(row.require_approval),
        cascade_id=member[1] if member else None,
    )


def _edge(spec: Any) -> Edge:
    return Edge(
        upstream=spec.upstream,
        downstream=spec.downstream,
        filters=tuple(spec.filters or ()),
        groups=tuple(spec.groups or ()),
        trigger_on=str(spec.trigger_on or "always"),
        require_approval=bool(spec.require_approval),
    )


def _running(row: Any, members: list[Any]) -> RunningCascade:
    return RunningCascade(
        id=row.id,
        root=row.root,
        operation=row.operation,
        members=len(members),
        finished=sum(1 for m in members if m.status in _FINISHED_MEMBER),
        awaiting=tuple(m.stack for m in members if m.status == MemberStatus.AWAITING_APPROVAL),
    )
