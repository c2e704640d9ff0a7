"""Cascades: what one upstream change sets off, and when each affected stack runs (design section 4).

Pure: the service stores the plan and each member's outcome and asks here what to do next, so the
rule (once per cascade, after every member upstream, skip with a reason) lives in one place and can
be checked exhaustively without a database. Stacks are ``"project/stack"`` strings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property, lru_cache
from graphlib import CycleError, TopologicalSorter
from itertools import chain, groupby, repeat
from typing import Final, Literal

from stackcascade.domain.deployments import Operation, Status, event_kinds_for_finish
from stackcascade.domain.errors import Conflict
from stackcascade.domain.graph import find_cycle, format_cycle
from stackcascade.domain.webhook_events import DEPLOYMENT_EVENTS, OPERATION_EVENTS, matches

FAILURE_EVENTS: Final = frozenset(e for e in DEPLOYMENT_EVENTS + OPERATION_EVENTS if e.endswith("_failed"))
"""The events only a failed deployment emits: an edge that listens to none of them does not expect failure."""


class TriggerOn(StrEnum):
    """``outputs-changed`` prunes a downstream stack whose inputs (the upstream's outputs) did not change."""

    ALWAYS = "always"
    OUTPUTS_CHANGED = "outputs-changed"


@dataclass(frozen=True, order=True)
class Edge:
    """After ``upstream`` emits an event that ``filters``/``groups`` match, deploy ``downstream``.

    Empty ``filters`` and ``groups`` match every event, as for any webhook.
    """

    upstream: str
    downstream: str
    filters: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    trigger_on: TriggerOn = TriggerOn.ALWAYS
    require_approval: bool = False

    def listens_to(self, event: str) -> bool:
        return matches(self.filters, self.groups, event, stack_scoped=True)


class MemberStatus(StrEnum):
    """Where a member stands; ``queued`` covers its deployment from creation until it finishes."""

    WAITING = "waiting"
    AWAITING_APPROVAL = "awaiting-approval"
    QUEUED = "queued"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


TERMINAL: Final = frozenset({MemberStatus.SUCCEEDED, MemberStatus.FAILED, MemberStatus.SKIPPED})

_STATE_WORDS: Final = {
    MemberStatus.WAITING: "is still waiting",
    MemberStatus.AWAITING_APPROVAL: "is awaiting approval",
    MemberStatus.QUEUED: "is queued",
    MemberStatus.SUCCEEDED: "has already succeeded",
    MemberStatus.FAILED: "has already failed",
    MemberStatus.SKIPPED: "has already been skipped",
}


def member_state(stack: str, status: MemberStatus) -> str:
    """Where a member stands, as the start of a sentence: ``app/prod has already succeeded``."""
    return f"{stack} {_STATE_WORDS[status]}"


_MEMBER_STATUS: Final = {
    Status.NOT_STARTED: MemberStatus.QUEUED,
    Status.ACCEPTED: MemberStatus.QUEUED,
    Status.RUNNING: MemberStatus.QUEUED,
    Status.SUCCEEDED: MemberStatus.SUCCEEDED,
    Status.FAILED: MemberStatus.FAILED,
    Status.SKIPPED: MemberStatus.SKIPPED,
}


def events_of(operation: Operation, status: Status, *, started: bool = True) -> frozenset[str]:
    """Every event a deployment in ``status`` has emitted so far: what its outgoing edges can react to.

    A deployment superseded while queued (``skipped``) emitted only ``deployment_queued``; a failed one
    emitted ``deployment_started`` unless it failed before running (``started=False``: lease lost).
    """
    events = {"deployment_queued"}
    if status is Status.RUNNING or status is Status.SUCCEEDED or (status is Status.FAILED and started):
        events.add("deployment_started")
    events.update(event_kinds_for_finish(operation, status))
    return frozenset(events)


StopKind = Literal["failed", "superseded"]
Stops = tuple[tuple[str, StopKind], ...]
"""The members whose failure (or supersession) stopped a member, each with how it ended, sorted."""


@dataclass(frozen=True)
class Outcome:
    """What a member did, as far as its downstream edges care.

    ``events`` are the events its deployment emitted (none for a member the cascade skipped);
    ``outputs_changed`` is whether its outputs differ from those before it ran. ``superseded``: its
    deployment was skipped for a newer one (``skipIntermediateDeployments``). ``stopped_by``: for a
    member the cascade skipped, the failed or superseded members that stopped it, however far up.
    """

    status: MemberStatus
    events: frozenset[str] = frozenset()
    outputs_changed: bool = True
    reason: str | None = None
    superseded: bool = False
    stopped_by: Stops = ()

    @classmethod
    def of(
        cls,
        operation: Operation,
        status: Status,
        *,
        outputs_changed: bool | None = None,
        started: bool = True,
        reason: str | None = None,
    ) -> Outcome:
        """The outcome of a deployment; outputs can only have changed if an update succeeded, unless told."""
        if outputs_changed is None:
            outputs_changed = status is Status.SUCCEEDED and operation is Operation.UPDATE
        events = events_of(operation, status, started=started)
        return cls(_MEMBER_STATUS[status], events, outputs_changed, reason, superseded=status is Status.SKIPPED)


def fires(edge: Edge, upstream: Outcome) -> bool:
    """Whether ``upstream``'s events fire ``edge``: several matching events still fire it once."""
    if edge.trigger_on is TriggerOn.OUTPUTS_CHANGED and not upstream.outputs_changed:
        return False
    return any(edge.listens_to(event) for event in upstream.events)


@lru_cache(maxsize=4096)
def _could_fire(filters: tuple[str, ...], groups: tuple[str, ...], trigger_on: TriggerOn, operation: Operation) -> bool:
    probe = Edge("", "", filters, groups, trigger_on)
    return any(fires(probe, Outcome.of(operation, status)) for status in (Status.SUCCEEDED, Status.FAILED))


def could_fire(edge: Edge, operation: Operation) -> bool:
    """Whether some finished ``operation`` deployment fires ``edge``.

    A ``preview`` fires no ``update_succeeded`` edge, and only a successful update can fire an
    ``outputs-changed`` edge (nothing else stores outputs).
    """
    return _could_fire(edge.filters, edge.groups, edge.trigger_on, operation)


@dataclass(frozen=True)
class Plan:
    """The members of a cascade, computed once when it starts and stored with it.

    ``waves[0]`` is ``(root,)``; a member's wave is the length of the longest path to it from the
    root. ``edges`` are all the edges between two members: every one of them orders its ends, even
    one that cannot fire.
    """

    root: str
    operation: Operation
    members: tuple[str, ...]
    waves: tuple[tuple[str, ...], ...]
    edges: tuple[Edge, ...]

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Members in (wave, name) order: the order decisions come in."""
        return tuple(stack for wave in self.waves for stack in sorted(wave))

    @cached_property
    def wave_of(self) -> dict[str, int]:
        return {stack: index for index, wave in enumerate(self.waves) for stack in wave}

    @cached_property
    def incoming(self) -> dict[str, dict[str, tuple[Edge, ...]]]:
        """For each member: its member upstreams, each with its edges to it (a pair may have several)."""
        grouped: dict[str, dict[str, list[Edge]]] = {stack: {} for stack in self.members}
        for edge in self.edges:
            grouped[edge.downstream].setdefault(edge.upstream, []).append(edge)
        return {stack: {up: tuple(edges) for up, edges in sorted(ups.items())} for stack, ups in grouped.items()}

    @cached_property
    def outgoing(self) -> dict[str, tuple[str, ...]]:
        """For each member: its member downstreams, in (wave, name) order."""
        below: dict[str, list[str]] = {stack: [] for stack in self.members}
        for stack in self.order:
            for upstream in self.incoming[stack]:
                below[upstream].append(stack)
        return {stack: tuple(downstreams) for stack, downstreams in below.items()}

    @cached_property
    def position(self) -> dict[str, int]:
        """Each member's index in ``order``."""
        return {stack: index for index, stack in enumerate(self.order)}


def _edge_key(edge: Edge) -> tuple[str, str, tuple[str, ...], tuple[str, ...], str, bool]:
    """Sort key of an edge: comparing plain tuples is several times faster than the dataclass's ``<``."""
    return (edge.upstream, edge.downstream, edge.filters, edge.groups, edge.trigger_on, edge.require_approval)


def _longest_path_waves(members: Collection[str], pairs: Collection[tuple[str, str]]) -> list[list[str]]:
    """Kahn's layering: a stack's wave is one more than its latest upstream's; each wave sorted."""
    successors: dict[str, list[str]] = {stack: [] for stack in members}
    pending = dict.fromkeys(members, 0)
    for upstream, downstream in pairs:
        successors[upstream].append(downstream)
        pending[downstream] += 1
    waves: list[list[str]] = []
    wave = sorted(stack for stack, count in pending.items() if count == 0)
    while wave:
        waves.append(wave)
        ready: list[str] = []
        for stack in wave:
            for downstream in successors[stack]:
                pending[downstream] -= 1
                if pending[downstream] == 0:
                    ready.append(downstream)
        wave = sorted(ready)
    if sum(map(len, waves)) < len(pending):
        cycle = format_cycle(find_cycle(pairs) or [])
        raise Conflict(f"the deployment graph has a cycle: {cycle}; remove one of its edges")
    return waves


@dataclass(frozen=True)
class EdgeIndex:
    """An org's edges arranged for planning many cascades; built once per version of the graph.

    ``outgoing``: each upstream's edges, de-duplicated, in sort order. ``successors``: its distinct
    downstreams; ``update_successors``: those over edges a member's update could fire. ``rank``: each
    stack's place in a topological order, or None when the edges have a cycle (planning then finds
    it, if the cycle is inside the cascade).
    """

    outgoing: Mapping[str, tuple[Edge, ...]]
    successors: Mapping[str, tuple[str, ...]]
    update_successors: Mapping[str, tuple[str, ...]]
    rank: Mapping[str, int] | None


def index_edges(edges: Iterable[Edge]) -> EdgeIndex:
    grouped: dict[str, list[Edge]] = {}
    for edge in set(edges):
        grouped.setdefault(edge.upstream, []).append(edge)
    outgoing = {upstream: tuple(sorted(group, key=_edge_key)) for upstream, group in grouped.items()}
    successors = {upstream: tuple(dict.fromkeys(e.downstream for e in group)) for upstream, group in outgoing.items()}
    update_successors = {
        upstream: tuple(dict.fromkeys(e.downstream for e in group if could_fire(e, Operation.UPDATE)))
        for upstream, group in outgoing.items()
    }
    return EdgeIndex(outgoing, successors, update_successors, _rank(successors))


def reindex(index: EdgeIndex, replaced: Mapping[str, Iterable[Edge]]) -> EdgeIndex:
    """``index`` with the outgoing edges of each stack in ``replaced`` swapped for the given ones.

    The same as ``index_edges`` over the edges that result, at the cost of the changed stacks' edges:
    the topological order is kept when every new edge agrees with it, and found again otherwise.
    """
    outgoing = dict(index.outgoing)
    successors = dict(index.successors)
    update_successors = dict(index.update_successors)
    for upstream, edges in replaced.items():
        group = tuple(sorted(set(edges), key=_edge_key))
        if group:
            outgoing[upstream] = group
            successors[upstream] = tuple(dict.fromkeys(e.downstream for e in group))
            update_successors[upstream] = tuple(
                dict.fromkeys(e.downstream for e in group if could_fire(e, Operation.UPDATE))
            )
        else:
            for mapping in (outgoing, successors, update_successors):
                mapping.pop(upstream, None)
    new_edges = [(upstream, downstream) for upstream in replaced for downstream in successors.get(upstream, ())]
    rank = _ranked_too(index.rank, new_edges)
    if rank is None or not all(rank[upstream] < rank[downstream] for upstream, downstream in new_edges):
        rank = _rank(successors)
    return EdgeIndex(outgoing, successors, update_successors, rank)


def _ranked_too(rank: Mapping[str, int] | None, edges: list[tuple[str, str]]) -> Mapping[str, int] | None:
    """``rank`` with the stacks it does not know yet (they had no edge) placed first, or last if an edge
    leads to them; whether that is still a topological order is for the caller to check."""
    if rank is None:
        return None
    unknown = {stack for edge in edges for stack in edge if stack not in rank}
    if not unknown:
        return rank
    targets = {downstream for _, downstream in edges}
    extended = dict(rank)
    first, last = min(rank.values(), default=0), max(rank.values(), default=0)
    for stack in sorted(unknown):
        if stack in targets:
            last += 1
            extended[stack] = last
        else:
            first -= 1
            extended[stack] = first
    return extended


def _rank(successors: Mapping[str, Iterable[str]]) -> dict[str, int] | None:
    """Each stack's place in a topological order of the edges, or None if they have a cycle."""
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for upstream, downstreams in successors.items():
        sorter.add(upstream)
        for downstream in downstreams:
            sorter.add(downstream, upstream)
    try:
        return {stack: index for index, stack in enumerate(sorter.static_order())}
    except CycleError:
        return None


def plan(root: str, operation: Operation, edges: Iterable[Edge]) -> Plan | None:
    """The cascade that ``operation`` on ``root`` sets off, or None when no edge out of ``root`` could fire.

    Members are the stacks reachable from ``root`` over edges that could fire: for ``operation`` out
    of the root, for ``update`` (what members run) further on. Raises Conflict if the members' edges
    form a cycle; the service refuses such edges, but a loop must never run.
    """
    return plan_indexed(root, operation, index_edges(edges))


def plan_indexed(root: str, operation: Operation, index: EdgeIndex) -> Plan | None:
    """``plan`` over edges indexed beforehand: linear in the size of the cascade, not of the org's graph."""
    first = [edge.downstream for edge in index.outgoing.get(root, ()) if could_fire(edge, operation)]
    if not first:
        return None
    members = {root}
    frontier = set(first) - members
    update_successors = index.update_successors
    while frontier:  # level by level: the set operations run in C, the loop once per member
        members |= frontier
        reached: set[str] = set()
        for stack in frontier:
            reached.update(update_successors.get(stack, ()))
        frontier = reached - members
    inside = _edges_between(members, index)
    if index.rank is None:
        waves = _longest_path_waves(members, {(edge.upstream, edge.downstream) for edge in inside})
    else:
        waves = _waves_by_rank(root, members, index)
    return Plan(
        root=root,
        operation=operation,
        members=tuple(chain.from_iterable(waves)),
        waves=tuple(map(tuple, waves)),
        edges=tuple(inside),
    )


def _edges_between(members: set[str], index: EdgeIndex) -> list[Edge]:
    """The edges from a member to a member, by upstream in name order, each upstream's in index order.

    Usually every edge leaving a member stays inside (the edges an update can fire do, by construction),
    and the groups are taken whole with one check over all of them.
    """
    ordered = sorted(members)
    if members.issuperset(chain.from_iterable(map(index.successors.get, ordered, repeat(())))):
        return list(chain.from_iterable(map(index.outgoing.get, ordered, repeat(()))))
    return [edge for stack in ordered for edge in index.outgoing.get(stack, ()) if edge.downstream in members]


def _waves_by_rank(root: str, members: set[str], index: EdgeIndex) -> list[list[str]]:
    """Longest-path layering in one pass over the members in topological order (no cycle among them).

    Every member but the root is reached from the root, so each has a member upstream and the layering
    is the same as Kahn's from the root (``_longest_path_waves``).
    """
    assert index.rank is not None
    wave_of = dict.fromkeys(members, 0)
    current, successors_of = wave_of.get, index.successors.get
    for stack in sorted(members, key=index.rank.__getitem__):
        below = wave_of[stack] + 1
        for downstream in successors_of(stack, ()):
            if current(downstream, below) < below:  # a stack outside the cascade counts as already below
                wave_of[downstream] = below
    by_wave = sorted(sorted(wave_of), key=wave_of.__getitem__)  # stable: by wave, then by name
    return [list(stacks) for _, stacks in groupby(by_wave, key=wave_of.__getitem__)]


Action = Literal["run", "await_approval", "skip"]


@dataclass(frozen=True)
class Decision:
    """What the service does with ``stack`` now; ``reason`` is shown to people (why skipped, why waiting).

    ``stopped_by``: for a skip, the failed or superseded members that stopped it (the service stores
    them with the member, so its own downstream members are stopped by them too).
    """

    stack: str
    action: Action
    reason: str | None = None
    stopped_by: Stops = ()


def _listing(names: Iterable[str], conjunction: str = "and") -> str:
    ordered = sorted(names)
    if len(ordered) == 1:
        return ordered[0]
    return f"{', '.join(ordered[:-1])} {conjunction} {ordered[-1]}"


@dataclass(frozen=True)
class _Judgement:
    """How a member's upstreams ended, sorted by what that means for it."""

    fired: tuple[Edge, ...]
    blocking: frozenset[str]  # failed upstreams none of whose edges to it expects failure
    stops: Stops  # the failed or superseded members that stop it: blocking upstreams, or further up
    failed: frozenset[str]  # failed upstreams whose edges did not fire (includes ``blocking``)
    skipped: frozenset[str]
    unchanged: frozenset[str]  # edges matched, but trigger on outputs-changed and the outputs did not
    silent: frozenset[str]  # emitted no event the edges listen to

    @property
    def runs(self) -> bool:
        return bool(self.fired) and not self.stops

    def reason(self) -> str:
        """The most useful reason to skip: what stopped it beats a failure beats a skip beats unchanged outputs."""
        if self.stops:
            return _stop_reason(self.stops)
        if self.failed:
            noun = "upstream" if len(self.failed) == 1 else "upstreams"
            return f"{noun} {_listing(self.failed)} failed"
        if self.skipped:
            noun = "upstream" if len(self.skipped) == 1 else "upstreams"
            return f"{noun} {_listing(self.skipped)} skipped"
        if self.unchanged:
            return f"outputs of {_listing(self.unchanged)} unchanged"
        if self.silent:
            return f"no edge from {_listing(self.silent, 'or')} fired"
        return "no incoming edge fired"


def _stop_reason(stops: Stops) -> str:
    """``upstream database/prod failed``: names the member that stopped it, even several waves up."""
    parts = []
    for kind in ("failed", "superseded"):
        names = [stack for stack, how in stops if how == kind]
        if names:
            noun = "upstream" if len(names) == 1 else "upstreams"
            what = "failed" if kind == "failed" else "superseded by a newer deployment (skipIntermediateDeployments)"
            parts.append(f"{noun} {_listing(names)} {what}")
    return "; ".join(parts)


def _outcome(outcomes: Mapping[str, Outcome], stack: str) -> Outcome:
    return outcomes.get(stack) or Outcome(MemberStatus.WAITING)


Verdict = Literal["skipped", "blocked", "fired", "failed", "unchanged", "silent"]


def _verdict(edges: Sequence[Edge], outcome: Outcome) -> tuple[Verdict, tuple[Edge, ...]]:
    """How a terminal upstream's outcome meets its edges to one member, and the edges that fired.

    ``skipped``: a skip fires nothing, whatever its events; ``blocked``: it failed and none of the edges
    expects a failure; ``fired``; otherwise why nothing fired: ``failed``, ``unchanged`` (an event it
    listens to, but its outputs did not change) or ``silent``.
    """
    if outcome.status is MemberStatus.SKIPPED:
        return "skipped", ()
    if outcome.status is MemberStatus.FAILED:
        failure = outcome.events & FAILURE_EVENTS
        if not any(edge.listens_to(event) for edge in edges for event in failure):
            return "blocked", ()
    these = tuple(edge for edge in edges if fires(edge, outcome))
    if these:
        return "fired", these
    if outcome.status is MemberStatus.FAILED:
        return "failed", ()
    if any(edge.listens_to(event) for edge in edges for event in outcome.events):
        return "unchanged", ()
    return "silent", ()


def edge_fired(plan: Plan, outcomes: Mapping[str, Outcome], edge: Edge) -> tuple[bool | None, str | None]:
    """Whether ``edge`` fired as the decision rule counts it (None while its upstream has not finished),
    and why it did not: what the API and the console tell a reader is what decided the member."""
    outcome = outcomes.get(edge.upstream)
    if outcome is None or outcome.status not in TERMINAL:
        return None, None
    edges = plan.incoming.get(edge.downstream, {}).get(edge.upstream) or (edge,)
    verdict, fired = _verdict(edges, outcome)
    if verdict == "fired" and edge in fired:
        return True, None
    upstream = edge.upstream
    if verdict == "skipped":
        return (
            False,
            f"{upstream} was superseded by a newer deployment" if outcome.superseded else f"{upstream} was skipped",
        )
    if verdict in ("blocked", "failed"):
        return False, f"{upstream} failed"
    if any(edge.listens_to(event) for event in outcome.events):
        return False, f"outputs of {upstream} unchanged"
    return False, f"{upstream} emitted no event it listens to"


def _judge(plan: Plan, outcomes: Mapping[str, Outcome], stack: str) -> _Judgement:
    fired: list[Edge] = []
    blocking: set[str] = set()
    failed: set[str] = set()
    skipped: set[str] = set()
    unchanged: set[str] = set()
    silent: set[str] = set()
    stops: dict[str, StopKind] = {}
    carried: dict[str, StopKind] = {}  # what stopped the skipped upstreams, further up
    for upstream, edges in plan.incoming[stack].items():
        outcome = _outcome(outcomes, upstream)
        verdict, these = _verdict(edges, outcome)
        if verdict == "skipped":
            skipped.add(upstream)  # a skip propagates as "did not fire", whatever the events say
            if outcome.superseded:
                stops[upstream] = "superseded"
            carried.update(outcome.stopped_by)  # a failure stops every descendant, not only its children
        elif verdict == "blocked":
            blocking.add(upstream)
            failed.add(upstream)
            stops[upstream] = "failed"
        elif verdict == "fired":
            fired.extend(these)
        elif verdict == "failed":
            failed.add(upstream)
        elif verdict == "unchanged":
            unchanged.add(upstream)
        else:
            silent.add(upstream)
    # ... unless the member has an edge of its own from that failed member: that edge says whether it
    # expects the failure (it then fired) or not (the failure stops it directly).
    stops |= {name: how for name, how in carried.items() if name not in plan.incoming[stack]}
    return _Judgement(
        tuple(fired),
        frozenset(blocking),
        tuple(sorted(stops.items())),
        frozenset(failed),
        frozenset(skipped),
        frozenset(unchanged),
        frozenset(silent),
    )


def _gate(stack: str, fired: Iterable[Edge], gated: Collection[str]) -> str | None:
    """Why ``stack`` needs an approval before it runs, or None."""
    if stack in gated:
        return f"{stack} requires approval"
    gates = {edge.upstream for edge in fired if edge.require_approval}
    if gates:
        return f"the edge from {_listing(gates)} requires approval"
    return None


def decide(
    plan: Plan,
    outcomes: Mapping[str, Outcome],
    *,
    gated: Collection[str] = (),
    approved: Collection[str] = (),
    only: Collection[str] | None = None,
) -> list[Decision]:
    """What to do now with each member that is ready, in (wave, name) order.

    A waiting member is ready once every member upstream of it is terminal; it runs if at least one
    incoming edge fired and nothing stops it, otherwise it is skipped with the reason. A member is
    stopped by an upstream that failed on edges that do not expect failure or was superseded, and by
    whatever stopped a skipped upstream: a failure stops every descendant, so none runs before a retry
    of it could resume the members in between. A member that must run waits for approval first if it is in ``gated``
    or a fired edge requires approval, unless it is in ``approved``; an awaiting member in
    ``approved`` runs. The root is never decided here: its deployment started the cascade. Members
    missing from ``outcomes`` are waiting. Pure: deciding again before applying gives the same list.

    ``only`` limits the decisions to those members (the rest of the answer is the same): after one
    member finished, only its downstream members can have become ready, and ``outcomes`` then needs
    only them and their upstreams.
    """
    decisions: list[Decision] = []
    candidates = plan.order if only is None else sorted(set(only) & plan.position.keys(), key=plan.position.__getitem__)
    for stack in candidates:
        if stack == plan.root:
            continue
        status = _outcome(outcomes, stack).status
        if status is MemberStatus.AWAITING_APPROVAL:
            if stack in approved:
                decisions.append(Decision(stack, "run"))
            continue
        if status is not MemberStatus.WAITING:
            continue
        if any(_outcome(outcomes, up).status not in TERMINAL for up in plan.incoming[stack]):
            continue
        judgement = _judge(plan, outcomes, stack)
        if not judgement.runs:
            decisions.append(Decision(stack, "skip", judgement.reason(), judgement.stops))
            continue
        gate = _gate(stack, judgement.fired, gated)
        if gate is None or stack in approved:
            decisions.append(Decision(stack, "run"))
        else:
            decisions.append(Decision(stack, "await_approval", gate))
    return decisions


def retry_resets(plan: Plan, outcomes: Mapping[str, Outcome], stack: str) -> list[str]:
    """The members to put back to waiting when failed ``stack`` is retried, in (wave, name) order.

    ``stack`` itself runs again (the caller creates its deployment). Every descendant ``stack``
    stopped goes back to waiting, even one that something else still stops: deciding it again once its
    upstreams are done records what stops it then, so no member below it is stopped later by a
    failure that a retry has since put right. Members that ran, were rejected or superseded, or are
    still pending are left alone.
    """
    if stack not in plan.wave_of:
        raise Conflict(f"{stack} is not a member of this cascade")
    status = _outcome(outcomes, stack).status
    if status is not MemberStatus.FAILED:
        raise Conflict(f"{member_state(stack, status)}: only a failed member can be retried")
    resetting = {stack}
    resets: list[str] = []
    start = plan.wave_of[stack]
    for member in plan.order:
        outcome = _outcome(outcomes, member)
        if plan.wave_of[member] <= start or outcome.status is not MemberStatus.SKIPPED or outcome.superseded:
            continue
        if outcome.stopped_by:
            if any(name == stack for name, _ in outcome.stopped_by):
                resetting.add(member)
                resets.append(member)
            continue
        # Skipped with nothing recorded that stopped it: its upstream's failure fired none of its edges
        # (one that expects failure, but only on changed outputs), a rule of its own (rejected, pruned),
        # or a member recorded before stops were (migration 0009). Its direct upstreams tell.
        if resetting.isdisjoint(plan.incoming[member]):
            continue
        judgement = _judge(plan, outcomes, member)
        if judgement.runs or judgement.blocking - resetting:
            continue  # skipped for a reason of its own (rejected, superseded) or still blocked by another
        resetting.add(member)
        resets.append(member)
    return resets


class CascadeStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def finished(plan: Plan, outcomes: Mapping[str, Outcome]) -> bool:
    """Whether every member is terminal: nothing more will happen unless a member is retried."""
    return all(_outcome(outcomes, stack).status in TERMINAL for stack in plan.members)


def cascade_status(plan: Plan, outcomes: Mapping[str, Outcome]) -> CascadeStatus:
    """``running`` until every member is terminal, then ``failed`` if any member failed, else ``succeeded``.

    Skipped members (pruned, rejected, stopped by a failure) do not fail a cascade by themselves;
    the failure that stopped them does.
    """
    if not finished(plan, outcomes):
        return CascadeStatus.RUNNING
    if any(_outcome(outcomes, stack).status is MemberStatus.FAILED for stack in plan.members):
        return CascadeStatus.FAILED
    return CascadeStatus.SUCCEEDED


def per_edge_runs(
    root: str,
    operation: Operation,
    edges: Iterable[Edge],
    outcome_of: Callable[[str, int], Outcome],
    *,
    max_runs: int = 1_000_000,
) -> Counter[str]:
    """How many times each stack runs in per-edge mode, Pulumi's: every fired edge deploys its target.

    ``outcome_of(stack, n)`` is the outcome of the ``n``-th (from 0) run of ``stack``; each run fires
    its own outgoing edges again, so the sink of a diamond runs once per path. That count grows with
    the number of paths, so past ``max_runs`` deployments this raises Conflict instead of looping.
    """
    edges = list(edges)
    runs: Counter[str] = Counter({root: 1})
    cascade = plan(root, operation, edges)
    if cascade is None:
        return runs
    outgoing: dict[str, list[Edge]] = {}
    for edge in edges:  # not de-duplicated: two identical webhooks are two deployments
        outgoing.setdefault(edge.upstream, []).append(edge)
    for stack in cascade.order:
        for n in range(runs[stack]):
            outcome = outcome_of(stack, n)
            for edge in outgoing.get(stack, ()):
                if fires(edge, outcome):
                    runs[edge.downstream] += 1
        if runs.total() > max_runs:
            raise Conflict(f"per-edge mode would start more than {max_runs} deployments from {root}")
    return runs
