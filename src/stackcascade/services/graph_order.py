"""Cycle checks for new deployment edges from a topological order kept in the stacks table.

An edge whose ends are already in order (the common case: it points down the graph) is admitted
with two indexed lookups, however large the org. Otherwise only the stacks numbered between its two
ends are walked (``domain.graph_order``). Callers hold the org's graph lock (``lock_graph``), so edge
changes of one org are ordered; a stack created meanwhile has no edges and is numbered last.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from stackcascade.domain import graph
from stackcascade.domain import graph_order as order
from stackcascade.store import graph_order as rows

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


async def cycle_closed_by(
    conn: AsyncConnection, org: str, source_id: str, target_id: str, *, exclude_webhook: str | None = None
) -> list[str] | None:
    """The cycle the active edge ``source -> target`` would close (``project/stack`` names), or None.

    None admits the edge: the stacks between its ends are then renumbered so that the order stays
    topological with the edge added (in the caller's transaction). ``exclude_webhook``: the edge being
    replaced. The cycle is the one ``domain.graph.cycle_with`` names for the whole graph: every path
    from ``target`` back to ``source`` runs through stacks numbered between the two, which the walk
    below has already found.
    """
    if source_id == target_id:
        name = (await rows.refs(conn, (source_id,)))[source_id]
        return [name, name]
    numbers = await rows.orders(conn, (source_id, target_id))
    if None in numbers.values() or await rows.has_unordered(conn, org):
        await renumber(conn, org)
        numbers = await rows.orders(conn, (source_id, target_id))
    source_order, target_order = int(numbers[source_id] or 0), int(numbers[target_id] or 0)
    if not order.needs_search(source_order, target_order):
        return None
    descendants = await _walk(conn, target_id, target_order, source_order, down=True, exclude=exclude_webhook)
    if source_id in descendants:
        return await _cycle_among(conn, descendants, source_id, target_id, exclude_webhook)
    ancestors = await _walk(conn, source_id, source_order, target_order, down=False, exclude=exclude_webhook)
    changes = order.reorder(ancestors, descendants)
    if changes is None:  # ties in the order (stacks created at the same moment): number everything again
        await renumber(conn, org, extra=(source_id, target_id))
    else:
        await rows.set_orders(conn, changes)
    return None


async def _cycle_among(
    conn: AsyncConnection, stack_ids: Collection[str], source_id: str, target_id: str, exclude: str | None
) -> list[str]:
    names = await rows.refs(conn, stack_ids)
    edges = [(names[up], names[down]) for up, down in await rows.edges_among(conn, stack_ids, exclude_webhook=exclude)]
    cycle = graph.cycle_with(edges, [(names[source_id], names[target_id])])
    assert cycle is not None  # the walk found target -> ... -> source among these stacks
    return cycle


async def _walk(
    conn: AsyncConnection, start: str, start_order: int, bound: int, *, down: bool, exclude: str | None
) -> dict[str, int]:
    """``start`` and the stacks reachable from it (down) or reaching it (up) without passing ``bound``."""
    found = {start: start_order}
    frontier: set[str] = {start}
    while frontier:
        if down:
            step = await rows.successors(conn, frontier, at_most=bound, exclude_webhook=exclude)
        else:
            step = await rows.predecessors(conn, frontier, at_least=bound, exclude_webhook=exclude)
        frontier = {stack for stack in step if stack not in found}
        found.update((stack, step[stack]) for stack in frontier)
    return found


async def renumber(conn: AsyncConnection, org: str, *, extra: tuple[str, str] | None = None) -> None:
    """Number every stack of the org in a topological order of its active edges (and ``extra``)."""
    stack_ids, edges = await rows.org_graph(conn, org)
    numbers = order.numbered(stack_ids, [*edges, extra] if extra else edges)
    current = await rows.orders(conn, stack_ids) if stack_ids else {}
    await rows.set_orders(conn, {stack: n for stack, n in numbers.items() if current.get(stack) != n})
