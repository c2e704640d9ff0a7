"""Cascades: start one with the root deployment, advance it as members finish, approve, reject, retry.

Every transition runs inside the transaction of the change that causes it (the root's creation, a
member's finish, an approval), under a lock on the cascade row, so two members finishing at once
advance it one after the other. The decisions themselves are ``domain.cascade``'s.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stackcascade.domain import cascade as planner
from stackcascade.domain.cascade import CascadeStatus, MemberStatus, Outcome, Plan
from stackcascade.domain.deployments import Operation, Status, parse_operation
from stackcascade.domain.errors import Conflict, InvalidInput, NotFound
from stackcascade.domain.names import check_name
from stackcascade.domain.roles import Principal, Role
from stackcascade.services.context import Context
from stackcascade.services.org_graphs import OrgGraph, OrgGraphs, edges_of, stack_ids_of
from stackcascade.services.plan_documents import plan_document, plan_json, plan_of
from stackcascade.services.queueing import queue_all_in, settings_for
from stackcascade.store import cascades as rows
from stackcascade.store import deployments as deployment_rows
from stackcascade.store import orgs as org_rows
from stackcascade.store import stacks as stack_rows

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection

    from stackcascade.store.pipelined import Answer

MODES = ("coalesced", "per-edge")
_TERMINAL_STATUSES = {Status.SUCCEEDED.value, Status.FAILED.value, Status.SKIPPED.value}


@dataclass(frozen=True, slots=True)
class Started:
    """A planned cascade, before its rows are written with the root deployment."""

    id: str
    plan: Plan
    stack_ids: dict[str, str]


class PerEdge:
    """The answer of ``plan_for`` when the org deploys per edge: no cascade, the events fire the edges."""

    __slots__ = ()


PER_EDGE = PerEdge()


class _Plans:
    """Decoded plans by cascade id, so advancing a cascade does not re-read and re-decode its plan on
    every member's finish. A plan never changes once its cascade started, so an entry never goes stale
    (in any replica); the cache is bounded, least recently used first out."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._plans: OrderedDict[str, tuple[Plan, frozenset[str]]] = OrderedDict()

    def put(self, cascade_id: str, plan: Plan, root_events: frozenset[str]) -> None:
        self._plans[cascade_id] = (plan, root_events)
        self._plans.move_to_end(cascade_id)
        if len(self._plans) > self._size:
            self._plans.popitem(last=False)

    def peek(self, cascade_id: str) -> Plan | None:
        """The plan if this process holds it, without reading it."""
        found = self._plans.get(cascade_id)
        return None if found is None else found[0]

    async def get(self, conn: AsyncConnection, cascade_id: str) -> tuple[Plan, frozenset[str]] | None:
        """The plan and the root's events (an external update's), decoded once per process."""
        found = self._plans.get(cascade_id)
        if found is not None:
            self._plans.move_to_end(cascade_id)
            return found
        document = await rows.plan(conn, cascade_id)
        if document is None:
            return None
        plan, root_events = plan_of(document), frozenset(document.get("rootEvents") or ())
        self.put(cascade_id, plan, root_events)
        return plan, root_events


_PLANS = _Plans()


async def plan_for(
    conn: AsyncConnection,
    org: str,
    root: str,
    operation: Operation,
    root_id: str | None = None,
    *,
    graphs: OrgGraphs | None = None,
) -> Started | PerEdge | None:
    """The cascade a deployment of ``root`` would start, or None (no edge could fire), or ``PER_EDGE``
    (the root has edges and the org deploys per edge: its events fire them, see ``FIRES_EDGES``).

    With ``graphs``, an org graph this process already holds at the current version is used; this runs
    inside a write transaction, so a stale one is not read in full here: only the edges the root reaches.
    """
    if root_id is not None and not await rows.has_outgoing_edge(conn, root_id):
        return None
    if await rows.cascade_mode(conn, org) != "coalesced":
        return PER_EDGE
    graph = await graphs.cached(conn, org) if graphs is not None else None
    if graph is not None:
        plan = planner.plan_indexed(root, operation, graph.index)
        stack_ids = graph.stack_ids
    else:
        specs = await rows.edge_specs(conn, org, reachable_from=root_id)
        plan = planner.plan(root, operation, edges_of(specs))
        stack_ids = stack_ids_of(specs)
    if plan is None:
        return None
    return Started(str(uuid.uuid4()), plan, {stack: stack_ids[stack] for stack in plan.members})


async def record_in(
    conn: AsyncConnection,
    started: Started,
    org: str,
    root_deployment_id: str | None,
    now: float,
    *,
    root_events: tuple[str, ...] = (),
    root_status: Status | None = None,
) -> None:
    """Write the cascade and its members (the root queued, or already done for an external event)."""
    plan = started.plan
    _PLANS.put(started.id, plan, frozenset(root_events))  # harmless if this transaction rolls back: ids are unique
    await rows.insert(
        conn,
        {
            "id": started.id,
            "org": org,
            "root": plan.root,
            "root_deployment_id": root_deployment_id,
            "operation": plan.operation.value,
            "status": rows.RUNNING,
            "plan": plan_document(plan, plan.operation.value) | {"rootEvents": list(root_events)},
            "created_at": now,
        },
        [
            {
                "cascade_id": started.id,
                "stack": stack,
                "stack_id": started.stack_ids.get(stack),
                "wave": plan.wave_of[stack],
                "status": (_root_status(root_status) if stack == plan.root else MemberStatus.WAITING).value,
                "deployment_id": root_deployment_id if stack == plan.root else None,
                "modified_at": now,
            }
            for stack in plan.order
        ],
    )


def _root_status(status: Status | None) -> MemberStatus:
    """The root member: queued with its deployment, or already done when an external event started it."""
    if status is None:
        return MemberStatus.QUEUED
    return MemberStatus.SUCCEEDED if status is Status.SUCCEEDED else MemberStatus.FAILED


def _stops_of(stored: Any) -> planner.Stops:
    """``stopped_by`` as stored (JSON pairs), for a member skipped because a member above it failed."""
    return tuple((str(stack), "superseded" if how == "superseded" else "failed") for stack, how in stored or ())


def member_outcome(plan: Plan, member: Any, root_events: frozenset[str] = frozenset()) -> Outcome:
    """What a member stands at, as the planner decides with: its deployment's outcome, the events an
    external update reported, or where an earlier advance left it."""
    status = MemberStatus(member.status)
    if member.stack == plan.root and member.deployment_id is None:  # an external update event
        return Outcome(status, root_events, bool(member.outputs_changed), member.reason)
    if member.deployment_id is not None and member.deployment_status is None and status is MemberStatus.QUEUED:
        return Outcome(MemberStatus.SKIPPED, reason="the stack was deleted")  # its deployment went with it
    if member.deployment_id is None or member.deployment_status is None:
        return Outcome(status, reason=member.reason, stopped_by=_stops_of(member.stopped_by))
    operation = plan.operation if member.stack == plan.root else Operation.UPDATE
    if _cancelled_while_queued(member):  # not successful, and not superseded: it stops what is below it
        cancelled = Operation(member.operation or operation.value)
        events = planner.events_of(cancelled, Status.SKIPPED)
        return Outcome(MemberStatus.FAILED, events, outputs_changed=False, reason=member.reason)
    deployment = Status(member.deployment_status)
    if status is MemberStatus.QUEUED and member.deployment_status not in _TERMINAL_STATUSES:
        return Outcome(MemberStatus.QUEUED)
    return Outcome.of(
        Operation(member.operation or operation.value),
        deployment,
        outputs_changed=member.outputs_changed,
        started=member.started_at is not None,
        reason=member.reason or member.deployment_reason,
    )


def _cancelled_while_queued(member: Any) -> bool:
    """Whether the member's deployment was cancelled before it started (``cancelled_in``): the deployment
    is skipped, as a superseded one is, but the member was recorded failed (a superseded one: skipped)."""
    return bool(member.deployment_status == Status.SKIPPED.value and member.status == MemberStatus.FAILED.value)


async def cancelled_in(
    conn: AsyncConnection, cascade_id: str, member: str, deployment_id: str, reason: str, now: float
) -> bool:
    """The member's deployment was cancelled while queued (``deployments.cancel``, in its transaction).

    The member ends failed with the cancel's reason: not successful, so the members below it are skipped
    naming it, the cascade does not succeed, and a retry can run it again. The cascade moves on at once,
    as on a finish. Returns True when deployments were queued (the caller wakes the runners after its commit).
    """
    locked = await rows.lock(conn, cascade_id)
    if locked is None or locked.status != rows.RUNNING:
        return False
    found = await rows.members(conn, cascade_id, [member])
    if not found or found[0].deployment_id != deployment_id or found[0].status != MemberStatus.QUEUED.value:
        return False  # not this member's deployment (any more)
    await rows.update_member(
        conn, cascade_id, member, status=MemberStatus.FAILED.value, reason=reason, stopped_by=None, modified_at=now
    )
    return await advance_in(conn, cascade_id, now, finished=member)


@dataclass(frozen=True, slots=True)
class SentReads:
    """The first reads of ``advance_in`` after a member's finish, sent ahead with the finish's statements."""

    locked: Answer  # the cascade's row, locked
    members: Answer | None  # the finished member's neighbourhood, when this process holds the plan


async def send_reads(conn: AsyncConnection, cascade_id: str, finished: str) -> SentReads:
    """Send the lock of the cascade and the members that ``advance_in(finished=...)`` reads first.

    The members go after the lock, so the database reads them once the lock is held, as if read later.
    """
    locked = await rows.submit_lock(conn, cascade_id)
    plan = _PLANS.peek(cascade_id)
    if plan is None or finished not in plan.position:
        return SentReads(locked, None)
    return SentReads(locked, await rows.submit_members(conn, cascade_id, _neighbourhood(plan, {finished})[1]))


async def advance_in(
    conn: AsyncConnection, cascade_id: str, now: float, *, finished: str | None = None, sent: SentReads | None = None
) -> bool:
    """Record finished members, then run, gate or skip every member whose upstreams are all done.

    ``finished`` names the member whose deployment just finished: then only its neighbourhood is read
    (its downstream members and their upstreams, and so on down a chain of skips), so a member's
    finish costs the same in a cascade of 5 members or of 500. Without it, every member is looked at.
    ``sent``: ``send_reads`` for ``finished``, when the caller sent them already.
    Returns True when deployments were queued (the caller wakes the runners after its commit).
    """
    locked = sent.locked if sent is not None else await rows.submit_lock(conn, cascade_id)
    cascade = (await locked.result()).first()
    if cascade is None or cascade.status != rows.RUNNING:
        return False
    known = await _PLANS.get(conn, cascade_id)
    if known is None:
        return False
    plan, root_events = known
    if finished is None or finished not in plan.position:
        return await _advance_all(conn, cascade, plan, root_events, now)
    first = sent.members if sent is not None else None
    queued, open_member_seen = await _advance_from(conn, cascade, plan, root_events, now, finished, first)
    # A member this advance left waiting, gated or queued means the cascade goes on: no need to ask.
    if not open_member_seen and not await rows.has_unfinished_member(conn, cascade_id):
        await _advance_all(conn, cascade, plan, root_events, now)  # once per cascade: sets its final status
    return queued


async def _record(
    conn: AsyncConnection, cascade_id: str, plan: Plan, members: list[Any], root_events: frozenset[str], now: float
) -> tuple[dict[str, Outcome], set[str]]:
    """Each member's outcome, written to the members whose deployment finished; and those members."""
    outcomes: dict[str, Outcome] = {}
    ended: set[str] = set()
    for member in members:
        outcome = member_outcome(plan, member, root_events)
        if member.status != outcome.status.value:  # its deployment has finished
            await rows.update_member(
                conn, cascade_id, member.stack, status=outcome.status.value, reason=outcome.reason, modified_at=now
            )
            ended.add(member.stack)
        outcomes[member.stack] = outcome
    return outcomes, ended


async def _apply(
    conn: AsyncConnection, cascade: Any, decisions: list[Any], members: list[Any], now: float
) -> tuple[bool, set[str]]:
    """Carry out the planner's decisions: whether a deployment was queued, and the members that ended
    (skipped, or refused a deployment)."""
    by_stack = {m.stack: m for m in members}
    # A gate on a member whose stack was deleted waits for nobody: ``_deploy_members`` skips it instead.
    decisions = [
        planner.Decision(d.stack, "run") if d.action == "await_approval" and by_stack[d.stack].stack_id is None else d
        for d in decisions
    ]
    changes: dict[str, dict[str, Any]] = {}
    for decision in decisions:
        if decision.action == "skip":
            stops = [list(stop) for stop in decision.stopped_by] or None
            changes[decision.stack] = {
                "status": MemberStatus.SKIPPED.value,
                "reason": decision.reason,
                "stopped_by": stops,
            }
        elif decision.action == "await_approval":
            changes[decision.stack] = {
                "status": MemberStatus.AWAITING_APPROVAL.value,
                "reason": decision.reason,
                "stopped_by": None,
            }
    await rows.update_members(conn, cascade.id, {stack: {**c, "modified_at": now} for stack, c in changes.items()})
    ended = {stack for stack, change in changes.items() if change["status"] == MemberStatus.SKIPPED.value}
    running = [by_stack[decision.stack] for decision in decisions if decision.action == "run"]
    queued, refused = await _deploy_members(conn, cascade, running, now)
    return queued, ended | refused


def _gates(members: list[Any]) -> dict[str, set[str]]:
    return {
        "gated": {m.stack for m in members if m.gated},
        "approved": {m.stack for m in members if m.approved_by},
    }


async def _advance_all(
    conn: AsyncConnection, cascade: Any, plan: Plan, root_events: frozenset[str], now: float
) -> bool:
    queued = False
    while True:
        members = await rows.members(conn, cascade.id)
        outcomes, _ = await _record(conn, cascade.id, plan, members, root_events, now)
        decisions = planner.decide(plan, outcomes, **_gates(members))
        if not decisions:
            break
        queued |= (await _apply(conn, cascade, decisions, members, now))[0]
    status = planner.cascade_status(plan, outcomes)
    if status is not planner.CascadeStatus.RUNNING:
        await rows.update(conn, cascade.id, status=status.value, finished_at=now)
    return queued


def _neighbourhood(plan: Plan, frontier: set[str]) -> tuple[set[str], set[str]]:
    """The members that ended members (``frontier``) can make ready, and every member deciding it needs."""
    candidates = {down for stack in frontier for down in plan.outgoing[stack]}
    return candidates, frontier | candidates | {up for down in candidates for up in plan.incoming[down]}


async def _advance_from(
    conn: AsyncConnection,
    cascade: Any,
    plan: Plan,
    root_events: frozenset[str],
    now: float,
    finished: str,
    first: Answer | None = None,
) -> tuple[bool, bool]:
    """Advance from one member that ended: only its downstream members can have become ready.

    ``first``: the read of the first neighbourhood, when sent already (``send_reads``).
    Returns whether deployments were queued, and whether a member it read is left unfinished.
    """
    queued = False
    frontier, done = {finished}, set[str]()
    open_members: set[str] = set()  # read unfinished, or set to run or wait for an approval, by this advance
    closed: set[str] = set()  # members that ended during this advance (one read waiting may be skipped later)
    while frontier:
        done |= frontier
        candidates, needed = _neighbourhood(plan, frontier)
        if first is not None:
            members, first = list((await first.result()).all()), None
        else:
            members = await rows.members(conn, cascade.id, needed)
        outcomes, ended = await _record(conn, cascade.id, plan, members, root_events, now)
        decisions = planner.decide(plan, outcomes, only=candidates, **_gates(members)) if candidates else []
        deployed, decided_ended = await _apply(conn, cascade, decisions, members, now)
        queued |= deployed
        decided = {decision.stack for decision in decisions}
        open_members |= {
            stack
            for stack, outcome in outcomes.items()
            if stack in decided or outcome.status not in planner.TERMINAL  # run or gated: open
        }
        closed |= decided_ended | ended
        # Members that became terminal now (skipped, refused a deployment, or a deployment found ended)
        # make their own downstream members ready in turn.
        frontier = (decided_ended | ended) - done
    return queued, bool(open_members - closed)


# A member whose stack was deleted; it stops nothing: its downstream members see an edge that did not fire.
_DELETED: dict[str, Any] = {"status": MemberStatus.SKIPPED.value, "reason": "the stack was deleted", "stopped_by": None}


async def _deploy_members(conn: AsyncConnection, cascade: Any, members: list[Any], now: float) -> tuple[bool, set[str]]:
    """Queue each member's update with its own saved settings, in a few statements for them all (a
    finish can make a whole layer ready). A stack that cannot deploy ends its member instead: skipped
    when it was deleted, failed when it has no source. Returns whether any was queued, and those ended."""
    if not members:
        return False, set()
    found = await stack_rows.get_many_with_settings(conn, [m.stack_id for m in members if m.stack_id])
    refused: dict[str, dict[str, Any]] = {}
    ready = []
    for member in members:
        stack_row = found.get(member.stack_id) if member.stack_id else None
        if stack_row is None:
            refused[member.stack] = _DELETED
            continue
        try:
            ready.append((member, stack_row, settings_for(stack_row, {}, inherit=True)))
        except InvalidInput as exc:  # no deployment settings
            refused[member.stack] = {"status": MemberStatus.FAILED.value, "reason": exc.message, "stopped_by": None}
    await rows.update_members(conn, cascade.id, {stack: {**c, "modified_at": now} for stack, c in refused.items()})
    if not ready:
        return False, set(refused)
    queued = await queue_all_in(
        conn,
        [(stack_row, effective) for _, stack_row, effective in ready],
        Operation.UPDATE,
        initiator="cascade",
        requested_by=f"cascade from {cascade.root}",
        now=now,
        triggered_by=cascade.root_deployment_id,
        cascade_id=cascade.id,
        skip_deleted=True,  # a deletion that committed after the read above
    )
    by_stack = {row.stack_id: row for row in queued}
    vanished = {member.stack for member, stack_row, _ in ready if stack_row.id not in by_stack}
    if vanished:
        await rows.update_members(conn, cascade.id, {stack: {**_DELETED, "modified_at": now} for stack in vanished})
    await rows.update_members(
        conn,
        cascade.id,
        {
            member.stack: {
                "status": MemberStatus.QUEUED.value,
                "reason": None,
                "deployment_id": by_stack[stack_row.id].id,
                "modified_at": now,
            }
            for member, stack_row, _ in ready
            if stack_row.id in by_stack
        },
    )
    return bool(queued), set(refused) | vanished


async def reconcile(ctx: Context) -> int:
    """Advance the running cascades a member of which ended without advancing them: the lease sweeper's
    safety net (a superseded member's cascade is advanced after its commit, ``CascadesBehind``, unless the
    process died in between) and for deployments that vanished with their stack."""
    async with ctx.db.read() as conn:
        running = await rows.behind_ids(conn)  # one read; a write only where there is something to do
    queued = False
    for cascade_id in running:
        async with ctx.db.write() as conn:
            queued |= await advance_in(conn, cascade_id, ctx.now())
    if queued:
        ctx.work.notify()
    return len(running)


# --- reading -----------------------------------------------------------------------------------------


async def list_cascades(
    ctx: Context,
    principal: Principal,
    org: str,
    *,
    limit: int = 50,
    continuation: str | None = None,
    finished_only: bool = False,
    status: str | None = None,
) -> tuple[list[Any], str | None]:
    """A page of the org's cascades (or only the finished ones: the console lists running ones apart; or
    only those in ``status``, comma-separated), newest first, and the continuation token of the next
    (None: last)."""
    principal.require(org, Role.VIEWER, f"organization {org}")
    if not 1 <= limit <= 100:
        raise InvalidInput("pageSize must be between 1 and 100")
    statuses = _statuses(status)
    after = None
    if continuation is not None:
        after = rows.decode_cursor(continuation)
        if after is None:
            raise InvalidInput("continuationToken is not one this server gave out: pass the one from the last page")
    async with ctx.db.read() as conn:
        await _existing_org(conn, org)
        return await rows.list_page(conn, org, limit=limit, after=after, finished_only=finished_only, statuses=statuses)


def _statuses(status: str | None) -> frozenset[str]:
    """The statuses a ``status`` filter names (``running,failed``); empty: no filter."""
    if status is None:
        return frozenset()
    named = frozenset(part.strip() for part in status.split(","))
    known = [str(s) for s in CascadeStatus]
    unknown = sorted(named - set(known))
    if unknown:
        shown = ", ".join(repr(name) for name in unknown[:5])
        raise InvalidInput(
            f"status {shown} is not a cascade status: use one or more of {', '.join(known)}, comma-separated"
        )
    return named


async def _existing_org(conn: AsyncConnection, org: str) -> None:
    """A typo in an organization's name must not read as an empty organization."""
    check_name("organization", org, may_start_with_dot=True)
    if await org_rows.get(conn, org) is None:
        raise NotFound(f"organization {org} not found")


async def get(ctx: Context, principal: Principal, org: str, cascade_id: str) -> tuple[Any, list[Any]]:
    principal.require(org, Role.VIEWER, f"cascade {cascade_id}")
    async with ctx.db.read() as conn:
        cascade = await rows.get(conn, org, cascade_id)
        if cascade is None:
            raise NotFound(f"cascade {cascade_id} not found in organization {org}")
        return cascade, await rows.members(conn, cascade_id)


# --- approvals and retry -----------------------------------------------------------------------------


async def _member(conn: AsyncConnection, org: str, cascade_id: str, stack: str) -> tuple[Any, Any]:
    cascade = await rows.get(conn, org, cascade_id)
    if cascade is None:
        raise NotFound(f"cascade {cascade_id} not found in organization {org}")
    for member in await rows.members(conn, cascade_id):
        if member.stack == stack:
            return cascade, member
    raise NotFound(f"{stack} is not a member of cascade {cascade_id}")


async def approve(ctx: Context, principal: Principal, org: str, cascade_id: str, stack: str) -> None:
    await _resolve_gate(ctx, principal, org, cascade_id, stack, approve=True)


async def reject(ctx: Context, principal: Principal, org: str, cascade_id: str, stack: str) -> None:
    await _resolve_gate(ctx, principal, org, cascade_id, stack, approve=False)


async def _resolve_gate(
    ctx: Context, principal: Principal, org: str, cascade_id: str, stack: str, *, approve: bool
) -> None:
    principal.require(org, Role.MEMBER, f"cascade {cascade_id}")
    now = ctx.now()
    async with ctx.db.write() as conn:
        await rows.lock(conn, cascade_id)
        _, member = await _member(conn, org, cascade_id, stack)
        if member.status != MemberStatus.AWAITING_APPROVAL.value:
            state = planner.member_state(stack, MemberStatus(member.status))
            raise Conflict(f"{state}: only a member awaiting approval can be approved or rejected")
        if approve:
            await rows.update_member(conn, cascade_id, stack, approved_by=principal.name, modified_at=now)
        else:
            await rows.update_member(
                conn,
                cascade_id,
                stack,
                status=MemberStatus.SKIPPED.value,
                reason=f"rejected by {principal.name}",
                stopped_by=None,
                modified_at=now,
            )
        queued = await advance_in(conn, cascade_id, now)
    if queued:
        ctx.work.notify()


async def retry(ctx: Context, principal: Principal, org: str, cascade_id: str, stack: str) -> None:
    """Run a failed member again in its cascade; the descendants it had stopped wait for it again."""
    principal.require(org, Role.MEMBER, f"cascade {cascade_id}")
    now = ctx.now()
    async with ctx.db.write() as conn:
        await rows.lock(conn, cascade_id)
        cascade, member = await _member(conn, org, cascade_id, stack)
        plan, root_events = plan_of(cascade.plan), frozenset(cascade.plan.get("rootEvents") or ())
        members = await rows.members(conn, cascade_id)
        outcomes = {m.stack: member_outcome(plan, m, root_events) for m in members}
        resets = planner.retry_resets(plan, outcomes, stack)  # raises Conflict unless the member failed
        rerun = await _rerun_of(conn, cascade, plan, member)  # raises Conflict unless it can run
        for name in resets:
            await rows.update_member(
                conn,
                cascade_id,
                name,
                status=MemberStatus.WAITING.value,
                reason=None,
                deployment_id=None,
                stopped_by=None,
                modified_at=now,
            )
        await rows.update(conn, cascade_id, status=rows.RUNNING, finished_at=None)
        await _queue_rerun(conn, cascade, member, rerun, principal, now)
        await advance_in(conn, cascade_id, now)
    ctx.work.notify()


@dataclass(frozen=True, slots=True)
class _Rerun:
    """What a retry of a member runs: the deployment that failed, as it was."""

    stack_row: Any
    operation: Operation
    settings: dict[str, Any]
    initiator: str
    triggered_by: str | None


async def _rerun_of(conn: AsyncConnection, cascade: Any, plan: Plan, member: Any) -> _Rerun:
    """The root's failed deployment again (its operation, and the settings it ran with: the one-off
    overrides it was given included); any other member's update with its saved settings as they are now,
    as the cascade would have queued it. Conflict, before anything is written, when the stack cannot
    deploy: the message says what to fix."""
    found = await stack_rows.get_many_with_settings(conn, [member.stack_id]) if member.stack_id else {}
    stack_row = found.get(member.stack_id)
    if stack_row is None:
        raise Conflict(
            f"stack {cascade.org}/{member.stack} was deleted: it cannot run again in this cascade; "
            "create it again and deploy it on its own"
        )
    if member.stack == plan.root:
        failed = await deployment_rows.get(conn, member.deployment_id) if member.deployment_id else None
        if failed is not None:
            operation = Operation(failed.operation)
            return _Rerun(stack_row, operation, dict(failed.settings), failed.initiator, failed.triggered_by)
    try:
        settings = settings_for(stack_row, {}, inherit=True)
    except InvalidInput:
        stack_ref = f"{stack_row.org}/{stack_row.project}/{stack_row.name}"
        if stack_row.settings_document is None:
            raise Conflict(f"stack {stack_ref} has no deployment settings: save them first, then retry") from None
        raise Conflict(
            f"the deployment settings of stack {stack_ref} name no source: "
            "save them with sourceContext.git.repoUrl first, then retry"
        ) from None
    operation = Operation(cascade.operation) if member.stack == plan.root else Operation.UPDATE
    return _Rerun(stack_row, operation, settings, "cascade", cascade.root_deployment_id)


async def _queue_rerun(
    conn: AsyncConnection, cascade: Any, member: Any, rerun: _Rerun, principal: Principal, now: float
) -> None:
    """Queue ``rerun`` as the member's deployment, asked for by whoever retried it."""
    [row] = await queue_all_in(
        conn,
        [(rerun.stack_row, rerun.settings)],
        rerun.operation,
        initiator=rerun.initiator,
        requested_by=principal.name,
        now=now,
        triggered_by=rerun.triggered_by,
        cascade_id=cascade.id,
    )
    await rows.update_member(
        conn,
        cascade.id,
        member.stack,
        status=MemberStatus.QUEUED.value,
        reason=None,
        deployment_id=row.id,
        modified_at=now,
    )


# --- the graph and impact plans ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImpactPlan:
    """What a change would set off (``plan`` None: nothing), planned over ``graph``."""

    plan: Plan | None
    operation: str
    graph: OrgGraph

    def json(self) -> str:
        return plan_json(None, self.operation) if self.plan is None else self.graph.plan_json(self.plan)


async def impact_plan(
    ctx: Context, principal: Principal, org: str, project: str, stack: str, operation: object
) -> ImpactPlan:
    """The members and waves a change to this stack would set off now, without running anything.

    Planned over the org's indexed graph (``services.org_graphs``), read once per change of the graph.
    """
    principal.require(org, Role.VIEWER, f"stack {org}/{project}/{stack}")
    op = parse_operation(operation if operation is not None else "update")
    async with ctx.db.read() as conn:
        row = await stack_rows.find(conn, org, project, stack)
        if row is None:
            raise NotFound(f"stack {org}/{project}/{stack} not found")
        graph = await ctx.graphs.current(conn, org)
    return ImpactPlan(planner.plan_indexed(f"{project}/{stack}", op, graph.index), op.value, graph)


async def graph(ctx: Context, principal: Principal, org: str) -> tuple[list[Any], list[Any]]:
    """The org's stacks (with their latest deployment) and its active deployment edges."""
    principal.require(org, Role.VIEWER, f"organization {org}")
    async with ctx.db.read() as conn:
        await _existing_org(conn, org)
        return await rows.graph_nodes(conn, org), await rows.edge_specs(conn, org)


async def stack_gate(ctx: Context, principal: Principal, org: str, project: str, stack: str) -> bool:
    principal.require(org, Role.VIEWER, f"stack {org}/{project}/{stack}")
    async with ctx.db.read() as conn:
        row = await stack_rows.find(conn, org, project, stack)
    if row is None:
        raise NotFound(f"stack {org}/{project}/{stack} not found")
    return bool(row.require_approval)


async def set_stack_gate(
    ctx: Context, principal: Principal, org: str, project: str, stack: str, require_approval: object
) -> bool:
    """``requireApproval`` per stack: in any cascade, this stack waits for an approval before it runs.

    None leaves the gate as it is (a patch that gives nothing) and answers it; it still needs a member.
    """
    principal.require(org, Role.MEMBER, f"stack {org}/{project}/{stack}")
    if require_approval is not None and not isinstance(require_approval, bool):
        raise InvalidInput("requireApproval must be true or false")
    async with ctx.db.write() as conn:
        row = await stack_rows.find(conn, org, project, stack)
        if row is None:
            raise NotFound(f"stack {org}/{project}/{stack} not found")
        if require_approval is None:
            return bool(row.require_approval)
        await rows.set_stack_gate(conn, row.id, require_approval)
    return require_approval
