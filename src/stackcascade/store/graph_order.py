"""Stacks' places in the topological order of their org's deployment graph, and bounded walks of it."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackcascade.store.schema import stacks, webhooks

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection

_EDGE = sa.and_(webhooks.c.active.is_(True), webhooks.c.target_stack_id.is_not(None))
_NO_WEBHOOK = ""  # matches no webhook id: "exclude nothing"

_ORDERS = sa.select(stacks.c.id, stacks.c.graph_order).where(stacks.c.id.in_(sa.bindparam("b_ids", expanding=True)))
_UNORDERED = (
    sa.select(stacks.c.id).where(stacks.c.org == sa.bindparam("b_org"), stacks.c.graph_order.is_(None)).limit(1)
)
_HIGHEST = sa.select(sa.func.max(stacks.c.graph_order)).where(stacks.c.org == sa.bindparam("b_org"))


def _among(column: Any, *, postgres: bool) -> Any:
    """``column IN :b_ids``. On PostgreSQL one array parameter (``= ANY``): a walk's list can hold
    thousands of ids, and thousands of separate parameters cost PostgreSQL more to parse and plan
    than the query takes to run."""
    if postgres:
        return column == sa.any_(sa.bindparam("b_ids", type_=sa.ARRAY(sa.String)))
    return column.in_(sa.bindparam("b_ids", expanding=True))


def _neighbours(*, down: bool, postgres: bool) -> sa.Select[Any]:
    """Stacks one active edge below (``down``) or above the ``:b_ids`` stacks, with their numbers.

    The walk's bound is applied by the caller, not in SQL: with the bound in the query, PostgreSQL may
    drive the join from every stack under the bound (thousands) instead of from the edges of the few
    stacks in ``:b_ids``, especially while its statistics predate the numbering.
    """
    near, far = (
        (webhooks.c.target_stack_id, webhooks.c.stack_id) if down else (webhooks.c.stack_id, webhooks.c.target_stack_id)
    )
    return (
        sa.select(stacks.c.id, stacks.c.graph_order)
        .join(webhooks, near == stacks.c.id)
        .where(_among(far, postgres=postgres), _EDGE, webhooks.c.id != sa.bindparam("b_exclude"))
    )


def _edges_from(*, postgres: bool) -> sa.Select[Any]:
    return sa.select(webhooks.c.stack_id, webhooks.c.target_stack_id).where(
        _among(webhooks.c.stack_id, postgres=postgres), _EDGE, webhooks.c.id != sa.bindparam("b_exclude")
    )


def _refs(*, postgres: bool) -> sa.Select[Any]:
    ref = (stacks.c.project + "/" + stacks.c.name).label("ref")
    return sa.select(stacks.c.id, ref).where(_among(stacks.c.id, postgres=postgres))


# Keyed by "is the database PostgreSQL?".
_SUCCESSORS = {pg: _neighbours(down=True, postgres=pg) for pg in (False, True)}
_PREDECESSORS = {pg: _neighbours(down=False, postgres=pg) for pg in (False, True)}
_EDGES_FROM = {pg: _edges_from(postgres=pg) for pg in (False, True)}
_REFS = {pg: _refs(postgres=pg) for pg in (False, True)}
_SET = stacks.update().where(stacks.c.id == sa.bindparam("b_id")).values(graph_order=sa.bindparam("b_order"))
_ORG_STACKS = sa.select(stacks.c.id).where(stacks.c.org == sa.bindparam("b_org"))
_ORG_EDGES = sa.select(webhooks.c.stack_id, webhooks.c.target_stack_id).where(
    webhooks.c.org == sa.bindparam("b_org"), webhooks.c.stack_id.is_not(None), _EDGE
)


def _is_postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


async def orders(conn: AsyncConnection, stack_ids: Collection[str]) -> dict[str, int | None]:
    result = await conn.execute(_ORDERS, {"b_ids": sorted(stack_ids)})
    return {str(row.id): row.graph_order for row in result.all()}


async def has_unordered(conn: AsyncConnection, org: str) -> bool:
    return (await conn.scalar(_UNORDERED, {"b_org": org})) is not None


async def next_order(conn: AsyncConnection, org: str) -> int | None:
    """The number for a new stack: after every other one; None while the org is not ordered yet.

    Two index probes (``ix_stacks_org_graph_order``), however many stacks the org has.
    """
    if await has_unordered(conn, org):
        return None
    highest = await conn.scalar(_HIGHEST, {"b_org": org})
    return 0 if highest is None else int(highest) + 1


async def successors(
    conn: AsyncConnection, stack_ids: Collection[str], *, at_most: int, exclude_webhook: str | None
) -> dict[str, int]:
    """Direct downstream stacks over active edges, numbered ``at_most`` or lower."""
    params = {"b_ids": sorted(stack_ids), "b_exclude": exclude_webhook or _NO_WEBHOOK}
    rows = (await conn.execute(_SUCCESSORS[_is_postgres(conn)], params)).all()
    return {
        str(row.id): int(row.graph_order) for row in rows if row.graph_order is not None and row.graph_order <= at_most
    }


async def predecessors(
    conn: AsyncConnection, stack_ids: Collection[str], *, at_least: int, exclude_webhook: str | None
) -> dict[str, int]:
    """Direct upstream stacks over active edges, numbered ``at_least`` or higher."""
    params = {"b_ids": sorted(stack_ids), "b_exclude": exclude_webhook or _NO_WEBHOOK}
    rows = (await conn.execute(_PREDECESSORS[_is_postgres(conn)], params)).all()
    return {
        str(row.id): int(row.graph_order) for row in rows if row.graph_order is not None and row.graph_order >= at_least
    }


async def set_orders(conn: AsyncConnection, numbers: Mapping[str, int]) -> None:
    if numbers:
        await conn.execute(_SET, [{"b_id": stack_id, "b_order": order} for stack_id, order in numbers.items()])


async def org_graph(conn: AsyncConnection, org: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Every stack id of the org and its active deployment edges (upstream id, downstream id)."""
    stack_ids = [str(row.id) for row in (await conn.execute(_ORG_STACKS, {"b_org": org})).all()]
    edges = [(str(row[0]), str(row[1])) for row in (await conn.execute(_ORG_EDGES, {"b_org": org})).all()]
    return stack_ids, edges


async def refs(conn: AsyncConnection, stack_ids: Collection[str]) -> dict[str, str]:
    """``project/stack`` of each stack id."""
    query = _REFS[_is_postgres(conn)]
    return {str(row.id): str(row.ref) for row in (await conn.execute(query, {"b_ids": sorted(stack_ids)})).all()}


async def edges_among(
    conn: AsyncConnection, stack_ids: Collection[str], *, exclude_webhook: str | None
) -> list[tuple[str, str]]:
    """The active deployment edges between these stacks (upstream id, downstream id).

    Only the upstream end is matched in SQL (through the index on ``stack_id``); matching both ends
    there made PostgreSQL compare every edge of the org with the whole list.
    """
    members = set(stack_ids)
    params = {"b_ids": sorted(members), "b_exclude": exclude_webhook or _NO_WEBHOOK}
    rows = (await conn.execute(_EDGES_FROM[_is_postgres(conn)], params)).all()
    return [(str(up), str(down)) for up, down in rows if str(down) in members]
