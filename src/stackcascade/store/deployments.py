"""Deployment rows and the queue semantics that live in the database.

Claiming follows procrastinate's head-of-line rule: a queued deployment is eligible only when no
older queued or any active deployment exists for its stack. The partial unique index
``uq_deployments_one_active_per_stack`` is the last word on "one running deployment per stack".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from stackcascade.store.pipelined import Answer, send, submit
from stackcascade.store.schema import ACTIVE_STATUSES, deployments, orgs, stacks
from stackcascade.store.transaction_marks import mark_cascade_behind

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection

QUEUED = "not-started"
_PENDING = (QUEUED, *ACTIVE_STATUSES)

# The statements of the hot paths (runner protocol, deployment reads) are built once with bind
# parameters: building a select and its cache key anew costs several times what SQLite takes to run it.
# Bind parameters of WHERE clauses are named b_* (UPDATE reserves column names for its SET clause).


_INSERT = deployments.insert()


async def insert_many(conn: AsyncConnection, values: list[dict[str, Any]]) -> None:
    """Several deployments in one statement (each ``values`` with the same columns)."""
    if values:
        await send(conn, _INSERT, values)


def _with_stack(*columns: Any) -> sa.Select[Any]:
    return sa.select(
        *(columns or [deployments]),
        stacks.c.project.label("project"),
        stacks.c.name.label("stack"),
        stacks.c.paused.label("stack_paused"),
        stacks.c.last_version.label("latest_version"),
    ).join(stacks, stacks.c.id == deployments.c.stack_id)


_ID = sa.bindparam("b_id")


def _in_stack() -> sa.Select[Any]:
    return _with_stack().where(
        stacks.c.org == sa.bindparam("b_org"),
        stacks.c.project == sa.bindparam("b_project"),
        stacks.c.name == sa.bindparam("b_stack"),
    )


_GET = _with_stack().where(deployments.c.id == _ID)
_GET_MANY = _with_stack().where(deployments.c.id.in_(sa.bindparam("b_ids", expanding=True)))
# What the runner protocol's calls after the claim need: not the documents (settings, outputs).
_DOCUMENTS = frozenset({"settings", "outputs", "resource_changes"})
_GET_STATE = _with_stack(*(c for c in deployments.c if c.name not in _DOCUMENTS)).where(deployments.c.id == _ID)
_FIND_BY_ID = _in_stack().where(deployments.c.id == _ID)
_FIND_BY_VERSION = _in_stack().where(deployments.c.version == sa.bindparam("b_version"))


async def find_in_stack(
    conn: AsyncConnection,
    org: str,
    project: str,
    stack: str,
    *,
    deployment_id: str | None = None,
    version: int | None = None,
) -> sa.Row[Any] | None:
    """One deployment of one stack, by id or by version, in a single query."""
    where = {"b_org": org, "b_project": project, "b_stack": stack}
    if deployment_id is not None and version is None:
        return (await conn.execute(_FIND_BY_ID, {**where, "b_id": deployment_id})).first()
    if version is not None and deployment_id is None:
        return (await conn.execute(_FIND_BY_VERSION, {**where, "b_version": version})).first()
    query = _with_stack().where(stacks.c.org == org, stacks.c.project == project, stacks.c.name == stack)
    if deployment_id is not None:
        query = query.where(deployments.c.id == deployment_id)
    if version is not None:
        query = query.where(deployments.c.version == version)
    return (await conn.execute(query)).first()


async def get(conn: AsyncConnection, deployment_id: str) -> sa.Row[Any] | None:
    return (await conn.execute(_GET, {"b_id": deployment_id})).first()


async def get_state(conn: AsyncConnection, deployment_id: str) -> sa.Row[Any] | None:
    """A deployment's row without its settings, outputs and resource changes."""
    return (await conn.execute(_GET_STATE, {"b_id": deployment_id})).first()


async def get_by_version(conn: AsyncConnection, stack_id: str, version: int) -> sa.Row[Any] | None:
    query = _with_stack().where(deployments.c.stack_id == stack_id, deployments.c.version == version)
    return (await conn.execute(query)).first()


async def page(
    conn: AsyncConnection, *, org: str, stack_id: str | None, page: int, page_size: int, ascending: bool
) -> tuple[list[sa.Row[Any]], int]:
    condition = deployments.c.stack_id == stack_id if stack_id else deployments.c.org == org
    total = int(await conn.scalar(sa.select(sa.func.count()).select_from(deployments).where(condition)) or 0)
    order = deployments.c.seq.asc() if ascending else deployments.c.seq.desc()
    query = _with_stack().where(condition).order_by(order).offset((page - 1) * page_size).limit(page_size)
    return list((await conn.execute(query)).all()), total


async def counts_by_status(conn: AsyncConnection, *, org: str, stack_id: str | None = None) -> dict[str, int]:
    query = sa.select(deployments.c.status, sa.func.count()).group_by(deployments.c.status)
    query = query.where(deployments.c.stack_id == stack_id) if stack_id else query.where(deployments.c.org == org)
    return {str(status): int(count) for status, count in (await conn.execute(query)).all()}


_LIVE_OF_STACK = (
    sa.select(deployments.c.status)
    .where(deployments.c.stack_id == sa.bindparam("b_stack_id"), deployments.c.status.in_(_PENDING))
    .order_by(deployments.c.seq)
    .with_for_update()
)


async def lock_live(conn: AsyncConnection, stack_id: str) -> bool:
    """Lock the stack's queued and active deployments (PostgreSQL); whether one of them is active.

    A claim in flight commits first (its row is then seen active), and none can claim them afterwards
    (claims skip locked rows) until this transaction ends: what a deletion checks stays true until it
    commits. SQLite's write transaction already excludes claims.
    """
    statuses = (await conn.execute(_LIVE_OF_STACK, {"b_stack_id": stack_id})).scalars().all()
    return any(status in ACTIVE_STATUSES for status in statuses)


async def any_queued(conn: AsyncConnection) -> bool:
    """Whether any deployment waits in the queue at all (one index probe)."""
    return (await conn.scalar(_ANY_QUEUED)) is not None


async def latest_id(conn: AsyncConnection, stack_id: str) -> str | None:
    query = sa.select(deployments.c.id).where(deployments.c.stack_id == stack_id).order_by(deployments.c.seq.desc())
    return await conn.scalar(query.limit(1))


_ANY_QUEUED = sa.select(deployments.c.seq).where(deployments.c.status == QUEUED).limit(1)
# SET comes from the names of the parameters given at execution.
_UPDATE = deployments.update().where(
    deployments.c.id == _ID, deployments.c.status.in_(sa.bindparam("b_expected", expanding=True))
)


async def submit_update(conn: AsyncConnection, deployment_id: str, expected: tuple[str, ...], **values: Any) -> Answer:
    """``update``, sent with what follows: the answer's ``rowcount`` is 0 when the deployment was not in
    one of ``expected`` statuses (then the caller must not commit what it sent meanwhile)."""
    return await submit(conn, _UPDATE, {"b_id": deployment_id, "b_expected": list(expected), **values})


async def update(conn: AsyncConnection, deployment_id: str, expected: tuple[str, ...], **values: Any) -> bool:
    """Change a deployment only while it is in one of ``expected`` statuses (compare-and-set)."""
    if any(isinstance(value, sa.ClauseElement) for value in values.values()):  # SQL expressions: build it
        statement = (
            deployments.update()
            .where(deployments.c.id == deployment_id, deployments.c.status.in_(expected))
            .values(**values)
        )
        result = await conn.execute(statement)
    else:
        result = await conn.execute(_UPDATE, {"b_id": deployment_id, "b_expected": list(expected), **values})
    return bool(result.rowcount)


@dataclass(frozen=True, slots=True)
class Superseded:
    id: str
    version: int
    by_version: int
    cascade_id: str | None


_QUEUED_OF_STACK = (
    sa.select(
        deployments.c.id,
        deployments.c.version,
        deployments.c.operation,
        deployments.c.skip_intermediate,
        deployments.c.cascade_id,
    )
    .where(deployments.c.stack_id == sa.bindparam("b_stack_id"), deployments.c.status == QUEUED)
    .order_by(deployments.c.seq)
)


async def submit_queued_of_stack(conn: AsyncConnection, stack_id: str) -> Answer:
    """The stack's queued deployments, for ``skip_superseded``: read with what follows."""
    return await submit(conn, _QUEUED_OF_STACK, {"b_stack_id": stack_id})


async def skip_superseded(
    conn: AsyncConnection, stack_id: str, *, now: float, queued_of_stack: Answer | None = None
) -> list[Superseded]:
    """``skipIntermediateDeployments``: of the queued deployments of one operation, keep only the newest.

    Applies when the newest queued deployment of that operation asked for it. ``queued_of_stack``: the
    read of ``submit_queued_of_stack``, when the caller sent it already.
    """
    if queued_of_stack is None:
        queued_of_stack = await submit_queued_of_stack(conn, stack_id)
    queued = list((await queued_of_stack.result()).all())
    newest: dict[str, Any] = {}
    for row in queued:
        newest[row.operation] = row
    skipped: list[Superseded] = []
    for row in queued:
        keeper = newest[row.operation]
        if row.id != keeper.id and keeper.skip_intermediate:
            skipped.append(Superseded(str(row.id), int(row.version), int(keeper.version), row.cascade_id))
    for item in skipped:
        await update(
            conn,
            item.id,
            (QUEUED,),
            status="skipped",
            reason=f"superseded by version {item.by_version} (skipIntermediateDeployments)",
            modified_at=now,
            finished_at=now,
        )
        if item.cascade_id is not None:  # its cascade is advanced after the commit (``CascadesBehind``)
            mark_cascade_behind(item.cascade_id)
    return skipped


_d = deployments.alias("d")


def _active_literal() -> sa.BindParameter[Any]:
    """The active statuses written into the SQL, not bound: SQLite uses a partial index only when the
    query's WHERE visibly implies the index's (``status IN ('accepted', 'running')``)."""
    return sa.bindparam("b_active", ACTIVE_STATUSES, expanding=True, literal_execute=True)


def _queued_in(org_name: Any) -> sa.ColumnElement[bool]:
    """The org has a queued deployment on an unpaused stack."""
    return sa.exists().where(
        deployments.c.org == org_name,
        deployments.c.status == QUEUED,
        stacks.c.id == deployments.c.stack_id,
        sa.not_(stacks.c.paused),
    )


def _next_org(excluded: set[str], *, lock: bool = True) -> sa.Select[Any]:
    """Lock the unpaused org whose oldest queued deployment is oldest (SKIP LOCKED: never wait)."""
    oldest = (
        sa.select(sa.func.min(deployments.c.seq))
        .where(deployments.c.org == orgs.c.name, deployments.c.status == QUEUED)
        .scalar_subquery()
    )
    query = (
        sa.select(orgs.c.name, orgs.c.concurrency)
        .where(sa.not_(orgs.c.paused), _queued_in(orgs.c.name))
        .order_by(oldest)
        .limit(1)
    )
    if lock:
        query = query.with_for_update(skip_locked=True)
    if excluded:
        query = query.where(orgs.c.name.not_in(excluded))
    return query


def _head_of_line(org: Any) -> sa.Select[Any]:
    """The org's oldest queued deployment with no older queued and no active deployment on its stack."""
    blocked = sa.exists().where(
        deployments.c.stack_id == _d.c.stack_id,
        sa.or_(
            deployments.c.status.in_(_active_literal()),
            sa.and_(deployments.c.status == QUEUED, deployments.c.seq < _d.c.seq),
        ),
    )
    # Only a newer queued deployment that asked for it can make skipIntermediateDeployments skip anything.
    may_supersede = sa.exists().where(
        deployments.c.stack_id == _d.c.stack_id,
        deployments.c.status == QUEUED,
        deployments.c.seq > _d.c.seq,
        deployments.c.skip_intermediate,
    )
    return (
        sa.select(_d.c.seq, _d.c.id, _d.c.stack_id, may_supersede.label("may_supersede"))
        .join(stacks, stacks.c.id == _d.c.stack_id)
        .where(_d.c.org == org, _d.c.status == QUEUED, sa.not_(stacks.c.paused), sa.not_(blocked))
        .order_by(_d.c.seq)
        .with_for_update(of=_d, skip_locked=True)
    )


# The org's active deployments, found through its stacks and the partial index of active deployments
# (its statuses written out, so SQLite can match the index's WHERE): not a scan of the org's history.
_ACTIVE_IN_ORG = (
    sa.select(sa.func.count())
    .select_from(deployments.join(stacks, stacks.c.id == deployments.c.stack_id))
    .where(stacks.c.org == sa.bindparam("b_org"), deployments.c.status.in_(_active_literal()))
)
_NEXT_ORG = _next_org(set())
_NEXT_ORG_UNLOCKED = _next_org(set(), lock=False)
_LOCK_ORG = (
    sa.select(orgs.c.name, orgs.c.concurrency)
    .where(orgs.c.name == sa.bindparam("b_org"), sa.not_(orgs.c.paused))
    .with_for_update()
)
_HEADS_OF_LINE = _head_of_line(sa.bindparam("b_org")).limit(sa.bindparam("b_limit"))
# SET: runner_id, status, lease_expires_at, modified_at (and started_at), from the parameters.
_TAKE = deployments.update().where(deployments.c.id == _ID, deployments.c.status == QUEUED)


async def _wait_for_busy_org(conn: AsyncConnection) -> sa.Row[Any] | None:
    """The org with queued work that another claimer holds locked: wait for its lock (PostgreSQL).

    Skipping it would send this claimer back to sleep until the next wake-up although work is queued:
    with one busy org, runners would start one deployment per wake-up. Waiting is safe from deadlock
    because a claimer that gets here holds no other org's lock (the caller checks ``excluded``).
    """
    name = await conn.scalar(_NEXT_ORG_UNLOCKED)
    if name is None:
        return None
    return (await conn.execute(_LOCK_ORG, {"b_org": name})).first()


async def claim(
    conn: AsyncConnection,
    *,
    runner_id: str,
    lease_seconds: float,
    now: float | Callable[[], float],
    start: bool = False,
) -> sa.Row[Any] | None:
    """Lease the oldest eligible deployment to ``runner_id`` (``claim_many`` for one runner)."""
    taken = await claim_many(conn, runner_ids=[runner_id], lease_seconds=lease_seconds, now=now, start=start)
    return taken[0] if taken else None


async def claim_many(
    conn: AsyncConnection,
    *,
    runner_ids: list[str],
    lease_seconds: float,
    now: float | Callable[[], float],
    start: bool = False,
    claim_keys: Mapping[str, str] | None = None,
    attempts: int = 1000,
) -> list[sa.Row[Any]]:
    """Lease the oldest eligible deployments, one to each of ``runner_ids`` in order (status ``accepted``;
    ``running`` with ``start``, in the same statement); fewer (or none) when fewer are eligible.

    The org row is locked first and the org's running work counted under that lock, so the
    concurrency limit holds by construction. Locks are taken with SKIP LOCKED on PostgreSQL, so a
    claimer that finds an org locked tries the next one; only when every org with queued work is
    locked does it wait, for the oldest one's lock, holding no other (so claimers cannot deadlock).
    On SQLite the transaction already holds the write lock (BEGIN IMMEDIATE).

    ``claim_keys``: the key each runner's claim carried, kept with its lease (``leased_by_claim``).

    ``now`` may be a clock: it is then read once the heads of line are found, so that a lease (and a
    start) is never dated before the commit that queued its deployment. On PostgreSQL that commit can
    come after this transaction began, while it waited for the org's lock or for the event loop.
    """
    clock = now if callable(now) else lambda: now
    wanted = list(runner_ids)
    claimed: list[sa.Row[Any]] = []
    excluded: set[str] = set()
    for _ in range(attempts):
        if not wanted:
            break
        org = (await conn.execute(_next_org(excluded) if excluded else _NEXT_ORG)).first()
        if org is None and not excluded and conn.dialect.name == "postgresql":
            org = await _wait_for_busy_org(conn)
        if org is None:
            break
        # Sent together (one round trip on PostgreSQL): the heads are locked before the room is known, but
        # under the org's lock no other claimer looks at them; those beyond the room are left queued.
        active = await submit(conn, _ACTIVE_IN_ORG, {"b_org": org.name})
        found = await submit(conn, _HEADS_OF_LINE, {"b_org": org.name, "b_limit": len(wanted)})
        room = int(org.concurrency) - int((await active.result()).scalar() or 0)
        heads = list((await found.result()).all())[: max(room, 0)]
        if not heads:
            excluded.add(str(org.name))
            continue
        moment = clock()
        skipped = [await skip_superseded(conn, head.stack_id, now=moment) for head in heads if head.may_supersede]
        if any(skipped):
            continue  # a head may have been superseded; look again
        owners = dict(zip((str(head.id) for head in heads), wanted, strict=False))
        started = {"status": "running", "started_at": moment} if start else {"status": "accepted"}
        lease = {"lease_expires_at": moment + lease_seconds, "modified_at": moment, **started}
        keys = claim_keys or {}
        values = [
            {"b_id": id_, "runner_id": owner, "claim_key": keys.get(owner), **lease} for id_, owner in owners.items()
        ]
        try:
            async with conn.begin_nested():  # one round trip on PostgreSQL, for all of this
                await send(conn, _TAKE, values)  # one statement, executed for each
                got = await submit(conn, _GET_MANY, {"b_ids": list(owners)})
        except IntegrityError:
            break  # another claimer won one of these stacks: the unique index said no
        taken = [
            row
            for row in (await got.result()).all()
            if row.runner_id == owners[row.id] and row.status == started["status"]
        ]
        taken.sort(key=lambda row: row.seq)
        claimed += taken
        wanted = wanted[len(taken) :]
        if len(taken) < len(heads):
            break  # a compare-and-set lost (cannot happen under the org lock): do not loop on it
    return claimed


_LEASED_BY_CLAIM = _with_stack().where(
    deployments.c.runner_id == sa.bindparam("b_runner_id"),
    deployments.c.claim_key == sa.bindparam("b_claim_key"),
    deployments.c.status.in_(ACTIVE_STATUSES),
)


async def leased_by_claim(conn: AsyncConnection, runner_id: str, claim_key: str) -> sa.Row[Any] | None:
    """The active deployment that ``runner_id``'s claim with ``claim_key`` leased, if any."""
    return (await conn.execute(_LEASED_BY_CLAIM, {"b_runner_id": runner_id, "b_claim_key": claim_key})).first()


async def expired_leases(conn: AsyncConnection, *, now: float, limit: int = 100) -> list[sa.Row[Any]]:
    query = (
        sa.select(deployments.c.id)
        .where(deployments.c.status.in_(ACTIVE_STATUSES), deployments.c.lease_expires_at < now)
        .order_by(deployments.c.seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = [r.id for r in (await conn.execute(query)).all()]
    return [row for row in [await get(conn, i) for i in ids] if row is not None]
