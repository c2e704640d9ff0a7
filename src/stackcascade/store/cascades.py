"""Cascade rows: the plan fixed at the start, and one row per member with its state and deployment."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackcascade.store.pipelined import Answer, send, submit
from stackcascade.store.schema import cascade_members, cascades, deployments, orgs, stacks, webhooks

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection

RUNNING = "running"


# The statements on the path of every deployment create are built once with bind parameters: building a
# select (aliases, a recursive CTE) and its cache key anew costs more than SQLite takes to run it.
_CASCADE_MODE = sa.select(orgs.c.cascade_mode).where(orgs.c.name == sa.bindparam("b_org"))
_HAS_OUTGOING_EDGE = (
    sa.select(webhooks.c.id)
    .where(
        webhooks.c.stack_id == sa.bindparam("b_stack_id"),
        webhooks.c.active.is_(True),
        webhooks.c.target_stack_id.is_not(None),
    )
    .limit(1)
)


async def cascade_mode(conn: AsyncConnection, org: str) -> str:
    mode = await conn.scalar(_CASCADE_MODE, {"b_org": org})
    return str(mode or "coalesced")


async def set_cascade_mode(conn: AsyncConnection, org: str, mode: str) -> None:
    await conn.execute(orgs.update().where(orgs.c.name == org).values(cascade_mode=mode))


async def has_outgoing_edge(conn: AsyncConnection, stack_id: str) -> bool:
    """Whether an active deployment edge leaves the stack (one index probe: most stacks start no cascade)."""
    return (await conn.scalar(_HAS_OUTGOING_EDGE, {"b_stack_id": stack_id})) is not None


def _reachable() -> Any:
    """Stack ids reachable from ``:b_start`` over active deployment edges (a recursive CTE, start included).

    ``UNION`` (not ``UNION ALL``) makes it terminate on any graph and visit each stack once.
    """
    seed = sa.select(sa.bindparam("b_start", type_=sa.String).label("stack_id")).cte("reach", recursive=True)
    step = sa.select(webhooks.c.target_stack_id).join(seed, webhooks.c.stack_id == seed.c.stack_id)
    step = step.where(webhooks.c.active.is_(True), webhooks.c.target_stack_id.is_not(None))
    return seed.union(step)


def _edge_specs(reachable: bool) -> sa.Select[Any]:
    source = stacks.alias("source")
    target = stacks.alias("target")
    query = (
        sa.select(
            (source.c.project + "/" + source.c.name).label("upstream"),
            (target.c.project + "/" + target.c.name).label("downstream"),
            source.c.id.label("upstream_id"),
            target.c.id.label("downstream_id"),
            target.c.require_approval.label("downstream_gated"),
            webhooks.c.filters,
            webhooks.c.groups,
            webhooks.c.trigger_on,
            webhooks.c.require_approval,
        )
        .join(source, source.c.id == webhooks.c.stack_id)
        .join(target, target.c.id == webhooks.c.target_stack_id)
        .where(webhooks.c.org == sa.bindparam("b_org"), webhooks.c.active.is_(True))
    )
    if reachable:
        reach = _reachable()
        query = query.where(webhooks.c.stack_id.in_(sa.select(reach.c.stack_id)))
    return query


_EDGE_SPECS = {False: _edge_specs(False), True: _edge_specs(True)}
_EDGE_SPECS_FROM = _edge_specs(False).where(webhooks.c.stack_id.in_(sa.bindparam("b_ids", expanding=True)))


async def edge_specs(conn: AsyncConnection, org: str, *, reachable_from: str | None = None) -> list[sa.Row[Any]]:
    """Active deployment edges of the org with what the planner needs, and both stacks' ids.

    ``reachable_from`` (a stack id) keeps only the edges a cascade from that stack could use.
    """
    params = {"b_org": org}
    if reachable_from is not None:
        params["b_start"] = reachable_from
    return list((await conn.execute(_EDGE_SPECS[reachable_from is not None], params)).all())


async def edge_specs_from(conn: AsyncConnection, org: str, stack_ids: Collection[str]) -> list[sa.Row[Any]]:
    """``edge_specs`` of the edges leaving these stacks (the stacks whose edges changed)."""
    params = {"b_org": org, "b_ids": list(stack_ids)}
    return list((await conn.execute(_EDGE_SPECS_FROM, params)).all())


async def insert(conn: AsyncConnection, values: dict[str, Any], members: list[dict[str, Any]]) -> None:
    await conn.execute(cascades.insert().values(**values))
    await conn.execute(cascade_members.insert(), members)


# Everything but the plan document: the plan never changes, so advancing reads it once (``plan``).
_STATE_COLUMNS = [column for column in cascades.c if column.name != "plan"]


_LOCK = sa.select(*_STATE_COLUMNS).where(cascades.c.id == sa.bindparam("b_id"))
_LOCK_FOR_UPDATE = _LOCK.with_for_update()


async def lock(conn: AsyncConnection, cascade_id: str) -> sa.Row[Any] | None:
    """The cascade row without its plan, locked: members finishing at once advance it one after another."""
    return (await (await submit_lock(conn, cascade_id)).result()).first()


async def submit_lock(conn: AsyncConnection, cascade_id: str) -> Answer:
    """``lock``, sent with what follows: the answer's first row is the cascade's (None if it is gone)."""
    query = _LOCK_FOR_UPDATE if conn.dialect.name == "postgresql" else _LOCK
    return await submit(conn, query, {"b_id": cascade_id})


async def plan(conn: AsyncConnection, cascade_id: str) -> dict[str, Any] | None:
    """The plan document fixed when the cascade started."""
    document = await conn.scalar(sa.select(cascades.c.plan).where(cascades.c.id == cascade_id))
    return dict(document) if document is not None else None


async def get(conn: AsyncConnection, org: str, cascade_id: str) -> sa.Row[Any] | None:
    query = sa.select(cascades).where(cascades.c.id == cascade_id, cascades.c.org == org)
    return (await conn.execute(query)).first()


def _member_rows() -> sa.Select[Any]:
    """Members with their deployment's state, and whether a pause holds their queued deployment back."""
    return (
        sa.select(
            cascade_members,
            deployments.c.status.label("deployment_status"),
            deployments.c.reason.label("deployment_reason"),
            deployments.c.operation.label("operation"),
            deployments.c.version.label("version"),
            deployments.c.started_at.label("started_at"),
            deployments.c.finished_at.label("finished_at"),
            stacks.c.require_approval.label("gated"),
            stacks.c.paused.label("stack_paused"),
            orgs.c.paused.label("org_paused"),
        )
        .outerjoin(deployments, deployments.c.id == cascade_members.c.deployment_id)
        .outerjoin(stacks, stacks.c.id == cascade_members.c.stack_id)
        .outerjoin(orgs, orgs.c.name == stacks.c.org)
    )


def _members() -> sa.Select[Any]:
    return (
        _member_rows()
        .where(cascade_members.c.cascade_id == sa.bindparam("b_cascade_id"))
        .order_by(cascade_members.c.wave, cascade_members.c.stack)
    )


# Advancing a cascade runs on every member's finish: its statements are built once.
_MEMBERS = _members()
_SOME_MEMBERS = _members().where(cascade_members.c.stack.in_(sa.bindparam("b_stacks", expanding=True)))
_UPDATE_MEMBER = cascade_members.update().where(
    cascade_members.c.cascade_id == sa.bindparam("b_cascade_id"), cascade_members.c.stack == sa.bindparam("b_stack")
)
_UNFINISHED = (
    sa.select(cascade_members.c.stack)
    .where(
        cascade_members.c.cascade_id == sa.bindparam("b_cascade_id"),
        cascade_members.c.status.not_in(("succeeded", "failed", "skipped")),
    )
    .limit(1)
)


async def members(conn: AsyncConnection, cascade_id: str, stacks: Collection[str] | None = None) -> list[sa.Row[Any]]:
    """Members (all, or those in ``stacks``) with their deployment's state (NULL before it exists)."""
    if stacks is None:
        return list((await conn.execute(_MEMBERS, {"b_cascade_id": cascade_id})).all())
    return list((await (await submit_members(conn, cascade_id, stacks)).result()).all())


async def members_of(conn: AsyncConnection, cascade_ids: Collection[str]) -> list[sa.Row[Any]]:
    """``members`` of several cascades in one query (the graph reads every running cascade's)."""
    if not cascade_ids:
        return []
    query = (
        _member_rows()
        .where(cascade_members.c.cascade_id.in_(sorted(cascade_ids)))
        .order_by(cascade_members.c.cascade_id, cascade_members.c.wave, cascade_members.c.stack)
    )
    return list((await conn.execute(query)).all())


async def submit_members(conn: AsyncConnection, cascade_id: str, stacks: Collection[str]) -> Answer:
    """``members`` of ``stacks``, sent with what follows: the answer's rows."""
    return await submit(conn, _SOME_MEMBERS, {"b_cascade_id": cascade_id, "b_stacks": sorted(stacks)})


async def update_member(conn: AsyncConnection, cascade_id: str, stack: str, **values: Any) -> None:
    await send(conn, _UPDATE_MEMBER, {"b_cascade_id": cascade_id, "b_stack": stack, **values})


async def update_members(conn: AsyncConnection, cascade_id: str, changes: dict[str, dict[str, Any]]) -> None:
    """Several members in one statement: ``changes`` by member stack, each with the same columns."""
    if changes:
        await send(
            conn,
            _UPDATE_MEMBER,
            [{"b_cascade_id": cascade_id, "b_stack": stack, **values} for stack, values in changes.items()],
        )


async def has_unfinished_member(conn: AsyncConnection, cascade_id: str) -> bool:
    """Whether a member is still waiting, awaiting approval or queued (as recorded on the member rows)."""
    return (await conn.scalar(_UNFINISHED, {"b_cascade_id": cascade_id})) is not None


async def update(conn: AsyncConnection, cascade_id: str, **values: Any) -> None:
    await send(conn, cascades.update().where(cascades.c.id == cascade_id).values(**values))


_SET_OUTPUTS_CHANGED = cascade_members.update().where(
    cascade_members.c.deployment_id == sa.bindparam("b_deployment_id")
)
_OUTPUTS_BEFORE = sa.select(stacks.c.outputs).where(
    stacks.c.id
    == sa.select(deployments.c.stack_id).where(deployments.c.id == sa.bindparam("b_deployment_id")).scalar_subquery()
)


async def set_outputs_changed(conn: AsyncConnection, deployment_id: str, changed: bool) -> None:
    await send(conn, _SET_OUTPUTS_CHANGED, {"b_deployment_id": deployment_id, "outputs_changed": changed})


_OPEN_MEMBER_STATUSES = ("queued", "awaiting-approval")


async def end_members_of_deleted_stack(conn: AsyncConnection, stack_id: str, now: float) -> list[str]:
    """The stack is being deleted: its queued or gated members of running cascades are skipped, and
    every member of it forgets the stack (so a waiting one is skipped when its turn comes).

    Returns the running cascades whose members were skipped: they must be advanced.
    """
    of_stack = cascade_members.c.stack_id == stack_id
    # The locks of every cascade the stack is in, finished or not (a retry may revive one), in one order,
    # before any member row is written: a finish, a cancel or a retry takes its cascade's first too.
    locking = (
        sa.select(cascades.c.id, cascades.c.status)
        .where(cascades.c.id.in_(sa.select(cascade_members.c.cascade_id).where(of_stack)))
        .order_by(cascades.c.id)
        .with_for_update()
    )
    running = [row.id for row in (await conn.execute(locking)).all() if row.status == RUNNING]
    ended = await conn.execute(
        cascade_members.update()
        .where(of_stack, cascade_members.c.status.in_(_OPEN_MEMBER_STATUSES), cascade_members.c.cascade_id.in_(running))
        .values(status="skipped", reason="the stack was deleted", stopped_by=None, modified_at=now)
        .returning(cascade_members.c.cascade_id)
    )
    cascade_ids = sorted({row[0] for row in ended.all()})
    await conn.execute(cascade_members.update().where(of_stack).values(stack_id=None))
    return cascade_ids


async def behind_ids(conn: AsyncConnection) -> list[str]:
    """Running cascades with a member whose deployment ended outside a finish (superseded at a claim), or
    is gone (its stack was deleted by a transaction that could not see the member yet); and running
    cascades none of whose members is unfinished (an advance that missed setting the final status)."""
    unfinished = (
        sa.select(cascade_members.c.stack)
        .where(
            cascade_members.c.cascade_id == cascades.c.id,
            cascade_members.c.status.not_in(("succeeded", "failed", "skipped")),
        )
        .exists()
    )
    all_ended = sa.select(cascades.c.id).where(cascades.c.status == RUNNING, ~unfinished)
    query = (
        sa.select(cascade_members.c.cascade_id)
        .join(cascades, cascades.c.id == cascade_members.c.cascade_id)
        .outerjoin(deployments, deployments.c.id == cascade_members.c.deployment_id)
        .where(
            cascades.c.status == RUNNING,
            cascade_members.c.status == "queued",
            cascade_members.c.deployment_id.is_not(None),
            sa.or_(deployments.c.status.in_(("succeeded", "failed", "skipped")), deployments.c.id.is_(None)),
        )
        .distinct()
    )
    return sorted({row[0] for row in (await conn.execute(sa.union(query, all_ended))).all()})


# Without the plan: a list shows no members, and a large cascade's plan is a large document to decode.
_LIST_PAGE = (
    sa.select(*_STATE_COLUMNS)
    .where(cascades.c.org == sa.bindparam("b_org"))
    .order_by(cascades.c.created_at.desc(), cascades.c.id)
    .limit(sa.bindparam("b_limit"))
)
_LIST_PAGE_AFTER = _LIST_PAGE.where(
    sa.or_(
        cascades.c.created_at < sa.bindparam("b_created_at"),
        sa.and_(cascades.c.created_at == sa.bindparam("b_created_at"), cascades.c.id > sa.bindparam("b_id")),
    )
)


_NOT_RUNNING = cascades.c.status != RUNNING
_LIST_PAGES = {
    (False, False): _LIST_PAGE,
    (False, True): _LIST_PAGE_AFTER,
    (True, False): _LIST_PAGE.where(_NOT_RUNNING),
    (True, True): _LIST_PAGE_AFTER.where(_NOT_RUNNING),
}
_RUNNING_OF_ORG = (
    sa.select(*_STATE_COLUMNS)
    .where(cascades.c.status == RUNNING, cascades.c.org == sa.bindparam("b_org"))
    .order_by(cascades.c.created_at.desc(), cascades.c.id)
)


async def list_page(
    conn: AsyncConnection,
    org: str,
    *,
    limit: int,
    after: tuple[float, str] | None = None,
    finished_only: bool = False,
    statuses: Collection[str] = (),
) -> tuple[list[sa.Row[Any]], str | None]:
    """The org's cascades (or only the finished ones; or only those in one of ``statuses``), newest first,
    after the ``after`` cursor; and the cursor of the next page."""
    params: dict[str, Any] = {"b_org": org, "b_limit": limit + 1}
    if after is not None:
        params |= {"b_created_at": after[0], "b_id": after[1]}
    query = _LIST_PAGES[finished_only, after is not None]
    if statuses:
        query = query.where(cascades.c.status.in_(sa.bindparam("b_statuses", expanding=True)))
        params["b_statuses"] = sorted(statuses)
    found = list((await conn.execute(query, params)).all())
    page = found[:limit]
    return page, (_encode_cursor(page[-1]) if len(found) > limit else None)


async def running_of_org(conn: AsyncConnection, org: str) -> list[sa.Row[Any]]:
    """Every running cascade of the org, newest first, however old (through ``ix_cascades_running``).

    All of them, not a page: each holds an unfinished member, so there are no more than work in flight,
    and one left out would hide its waiting members and approvals from the console."""
    return list((await conn.execute(_RUNNING_OF_ORG, {"b_org": org})).all())


_CASCADE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _encode_cursor(row: sa.Row[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps([row.created_at, row.id]).encode()).decode()


def decode_cursor(token: str) -> tuple[float, str] | None:
    """A cursor ``list_page`` gave out, or None when ``token`` is not one."""
    try:
        created_at, cascade_id = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):
        return None
    if not isinstance(created_at, int | float) or isinstance(created_at, bool) or not isinstance(cascade_id, str):
        return None
    try:
        when = float(created_at)  # a 400-digit integer does not fit
    except OverflowError:
        return None
    if not math.isfinite(when) or not _CASCADE_ID.fullmatch(cascade_id):  # ids are UUIDs: no NUL reaches SQL
        return None
    return when, cascade_id


async def submit_stack_outputs_of(conn: AsyncConnection, deployment_id: str) -> Answer:
    """The outputs of the deployment's stack as they are now (the answer's scalar): read with what follows."""
    return await submit(conn, _OUTPUTS_BEFORE, {"b_deployment_id": deployment_id})


async def graph_nodes(conn: AsyncConnection, org: str) -> list[sa.Row[Any]]:
    """Every stack of the org with its newest deployment's status (NULL when it never deployed)."""
    latest = (
        sa.select(deployments.c.status)
        .where(deployments.c.stack_id == stacks.c.id)
        .order_by(deployments.c.seq.desc())
        .limit(1)
        .scalar_subquery()
    )
    query = (
        sa.select(
            (stacks.c.project + "/" + stacks.c.name).label("stack"),
            stacks.c.require_approval,
            stacks.c.paused,
            latest.label("last_status"),
        )
        .where(stacks.c.org == org)
        .order_by(stacks.c.project, stacks.c.name)
    )
    return list((await conn.execute(query)).all())


async def set_stack_gate(conn: AsyncConnection, stack_id: str, require_approval: bool) -> None:
    await conn.execute(stacks.update().where(stacks.c.id == stack_id).values(require_approval=require_approval))


async def set_root_outputs_changed(conn: AsyncConnection, cascade_id: str, changed: bool) -> None:
    root = sa.select(cascades.c.root).where(cascades.c.id == cascade_id).scalar_subquery()
    await conn.execute(
        cascade_members.update()
        .where(cascade_members.c.cascade_id == cascade_id, cascade_members.c.stack == root)
        .values(outputs_changed=changed)
    )
