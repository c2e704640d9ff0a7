"""Organizations: created on first use, hold the pause flag and the concurrency limit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackcascade.store.db import insert_ignoring_duplicates
from stackcascade.store.schema import graph_changes, orgs
from stackcascade.store.transaction_marks import mark_graph_changed, mark_org_created

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection


async def ensure(conn: AsyncConnection, name: str, *, concurrency: int, now: float) -> bool:
    """Create the org on first use; safe when several transactions do it at once. True: created now."""
    row = {"name": name, "concurrency": concurrency, "paused": False, "created_at": now}
    created = await insert_ignoring_duplicates(conn, orgs, [row], ["name"]) == 1
    if created:
        mark_org_created(name)
    return created


async def count(conn: AsyncConnection) -> int:
    return int(await conn.scalar(sa.select(sa.func.count()).select_from(orgs)) or 0)


async def get(conn: AsyncConnection, name: str) -> sa.Row[Any] | None:
    return (await conn.execute(sa.select(orgs).where(orgs.c.name == name))).first()


async def set_paused(conn: AsyncConnection, name: str, paused: bool) -> None:
    await conn.execute(orgs.update().where(orgs.c.name == name).values(paused=paused))


async def set_concurrency(conn: AsyncConnection, name: str, concurrency: int) -> None:
    await conn.execute(orgs.update().where(orgs.c.name == name).values(concurrency=concurrency))


# The deployment graph's version: read before a cached planning index is used, raised by every change.
_GRAPH_VERSION = sa.select(orgs.c.graph_version).where(orgs.c.name == sa.bindparam("b_org"))
_RAISE_GRAPH_VERSION = (
    orgs.update()
    .where(orgs.c.name == sa.bindparam("b_org"))
    .values(graph_version=orgs.c.graph_version + 1)
    .returning(orgs.c.graph_version)
)
_LOG_CHANGE = graph_changes.insert()
_PRUNE_CHANGES = graph_changes.delete().where(
    graph_changes.c.org == sa.bindparam("b_org"), graph_changes.c.version <= sa.bindparam("b_before")
)
_CHANGES_SINCE = (
    sa.select(graph_changes.c.version, graph_changes.c.stack_id)
    .where(graph_changes.c.org == sa.bindparam("b_org"), graph_changes.c.version > sa.bindparam("b_since"))
    .order_by(graph_changes.c.version)
)
KEPT_CHANGES = 500  # the log keeps at least this many of an org's newest changes


async def graph_version(conn: AsyncConnection, name: str) -> int:
    """How many changes the org's deployment graph has had (0 for an unknown org)."""
    return int(await conn.scalar(_GRAPH_VERSION, {"b_org": name}) or 0)


async def graph_changed(conn: AsyncConnection, name: str, stack_id: str | None) -> None:
    """Count and log a change to the org's graph, in the transaction that makes it.

    ``stack_id``: the stack whose outgoing edges changed; None when it cannot be said (read everything).
    On PostgreSQL this also locks the org's row until the transaction ends; callers do it before
    touching the webhook or stack rows, so locks are always taken org first (as claims do).
    """
    version = await conn.scalar(_RAISE_GRAPH_VERSION, {"b_org": name})
    if version is None:
        return
    mark_graph_changed(name)
    await conn.execute(_LOG_CHANGE, {"org": name, "version": version, "stack_id": stack_id})
    if version % 100 == 0:
        await conn.execute(_PRUNE_CHANGES, {"b_org": name, "b_before": version - KEPT_CHANGES})


async def graph_changes_since(conn: AsyncConnection, name: str, version: int) -> list[tuple[int, str | None]]:
    """The logged changes after ``version``, oldest first: (version, stack id or None)."""
    rows = await conn.execute(_CHANGES_SINCE, {"b_org": name, "b_since": version})
    return [(int(row.version), row.stack_id) for row in rows]
