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
_NEXT = sa.select(sa.func.count(), sa.func.count(stacks.c.graph_order), sa.func.max(stacks.c.graph_order)).where(
    stacks.c.org == sa.bindparam("b_org")
)


def _neighbours(*, down: bool) -> sa.Select[Any]:
    """Stacks one active edge below (``down``) or above the ``:b_ids`` stacks, within ``:b_bound``."""
    near, far = (
        (webhooks.c.target_stack_id, webhooks.c.stack_id) if down else (webhooks.c.stack_id, webhooks.c.target_stack_id)
    )
    bound = stacks.c.graph_order <= sa.bindparam("b_bound") if down else stacks.c.graph_order >= sa.bindparam("b_bound")
    return (
        sa.select(stacks.c.id, stacks.c.graph_order)
        .join(webhooks, near == stacks.c.id)
        .where(far.in_(sa.bindparam("b_ids", expanding=True)), _EDGE, webhooks.c.id != sa.bindparam("b_exclude"), bound)
    )


_SUCCESSORS = _neighbours(down=True)
_PREDECESSORS = _neighbours(down=False)
_SET = stacks.update().where(stacks.c.id == sa.bindparam("b_id")).values(graph_order=sa.bindparam("b_order"))
_REFS = sa.select(stacks.c.id, (stacks.c.project + "/" + stacks.c.name).label("ref")).where(
    stacks.c.id.in_(sa.bindparam("b_ids", expanding=True))
)
_EDGES_AMONG = sa.select(webhooks.c.stack_id, webhooks.c.target_stack_id).where(
    webhooks.c.stack_id.in_(sa.bindparam("b_ids", expanding=True)),
    webhooks.c.target_stack_id.in_(sa.bindparam("b_ids", expanding=True)),
    _EDGE,
    webhooks.c.id != sa.bindparam("b_exclude"),
)
_ORG_STACKS = sa.select(stacks.c.id).where(stacks.c.org == sa.bindparam("b_org"))
_ORG_EDGES = sa.select(webhooks.c.stack_id, webhooks.c.target_stack_id).where(
    webhooks.c.org == sa.bindparam("b_org"), webhooks.c.stack_id.is_not(None), _EDGE
)


async def orders(conn: AsyncConnection, stack_ids: Collection[str]) -> dict[str, int | None]:
    result = await conn.execute(_ORDERS, {"b_ids": sorted(stack_ids)})
    return {str(row.id): row.graph_order for row in result.all()}


async def has_unordered(conn: AsyncConnection, org: str) -> bool:
    return (await conn.scalar(_UNORDERED, {"b_org": org})) is not None


async def next_order(conn: AsyncConnection, org: str) -> int | None:
    """The number for a new stack: after every other one; None while the org is not ordered yet."""
    total, ordered, highest = (await conn.execute(_NEXT, {"b_org": org})).one()
    if not total:
        return 0
    return int(highest) + 1 if ordered == total else None


async def successors(
    conn: AsyncConnection, stack_ids: Collection[str], *, at_most: int, exclude_webhook: str | None
) -> dict[str, int]:
    """Direct downstream stacks over active edges, numbered ``at_most`` or lower."""
    params = {"b_ids": sorted(stack_ids), "b_bound": at_most, "b_exclude": exclude_webhook or _NO_WEBHOOK}
    return {str(row.id): int(row.graph_order) for row in (await conn.execute(_SUCCESSORS, params)).all()}


async def predecessors(
    conn: AsyncConnection, stack_ids: Collection[str], *, at_least: int, exclude_webhook: str | None
) -> dict[str, int]:
    """Direct upstream stacks over active edges, numbered ``at_least`` or higher."""
    params = {"b_ids": sorted(stack_ids), "b_bound": at_least, "b_exclude": exclude_webhook or _NO_WEBHOOK}
    return {str(row.id): int(row.graph_order) for row in (await conn.execute(_PREDECESSORS, params)).all()}


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
    return {str(row.id): str(row.ref) for row in (await conn.execute(_REFS, {"b_ids": sorted(stack_ids)})).all()}


async def edges_among(
    conn: AsyncConnection, stack_ids: Collection[str], *, exclude_webhook: str | None
) -> list[tuple[str, str]]:
    """The active deployment edges between these stacks (upstream id, downstream id)."""
    params = {"b_ids": sorted(stack_ids), "b_exclude": exclude_webhook or _NO_WEBHOOK}
    return [(str(row[0]), str(row[1])) for row in (await conn.execute(_EDGES_AMONG, params)).all()]
