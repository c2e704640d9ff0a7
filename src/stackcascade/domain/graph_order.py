"""A topological order of a deployment graph, kept up to date edge by edge (Pearce and Kelly, 2006).

Every stack has a number and every edge goes from a lower to a higher number. Adding an edge
``source -> target`` with ``order[source] < order[target]`` can then close no cycle, and needs no
search at all: most new edges point "down" the graph. Otherwise only the stacks numbered between the
two ends can be involved: the descendants of ``target`` numbered up to ``order[source]`` (if
``source`` is among them, the edge closes a cycle) and the ancestors of ``source`` numbered from
``order[target]``. Those two sets swap places, reusing their own numbers, and every other stack keeps
its number. Removing an edge never invalidates an order.

The searches need the graph, which lives in the database: ``services.graph_order`` walks it there
and calls ``reorder`` with what it found.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from graphlib import CycleError, TopologicalSorter

from stackcascade.domain.errors import Conflict


def numbered(stacks: Iterable[str], edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """A fresh order of the whole graph: 0, 1, 2, ... in a topological order (ties by name)."""
    sorter: TopologicalSorter[str] = TopologicalSorter({stack: () for stack in sorted(stacks)})
    for upstream, downstream in edges:
        sorter.add(downstream, upstream)
    try:
        return {stack: index for index, stack in enumerate(sorter.static_order())}
    except CycleError as exc:
        raise Conflict(f"the deployment graph has a cycle through {' -> '.join(exc.args[1])}") from exc


def needs_search(source_order: int, target_order: int) -> bool:
    """Whether the edge ``source -> target`` must be searched for: its ends are not already in order."""
    return source_order >= target_order


def reorder(ancestors: Mapping[str, int], descendants: Mapping[str, int]) -> dict[str, int] | None:
    """New numbers after adding ``source -> target``; only the stacks whose number changes.

    ``ancestors``: ``source`` and its ancestors numbered at least ``order[target]``; ``descendants``:
    ``target`` and its descendants numbered at most ``order[source]`` (the two sets are disjoint, or
    the edge would close a cycle). The ancestors take the lowest of the numbers the two sets hold, in
    their present order, then the descendants. None when the sets hold a number twice (the order has
    ties): then only numbering the whole graph again is safe.
    """
    pool = sorted([*ancestors.values(), *descendants.values()])
    if len(set(pool)) != len(pool):
        return None
    moved = sorted(ancestors, key=lambda s: (ancestors[s], s)) + sorted(descendants, key=lambda s: (descendants[s], s))
    current = {**ancestors, **descendants}
    return {stack: number for stack, number in zip(moved, pool, strict=True) if current[stack] != number}
