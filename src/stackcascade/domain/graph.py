"""The organization's deployment graph: which stack's success triggers which ("project/stack" nodes).

An edge ``(a, b)`` means "after ``a`` updates, deploy ``b``". A cycle would make cascades run
forever, so edges that close one are refused with the cycle spelled out. Every walk is iterative
and every output is sorted, so large graphs neither hit the recursion limit nor give answers that
change from run to run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

Edge = tuple[str, str]


def _adjacency(edges: Iterable[Edge]) -> dict[str, list[str]]:
    """Sorted, de-duplicated successors of every node, every node present as a key."""
    succ: dict[str, set[str]] = {}
    for source, target in edges:
        succ.setdefault(source, set()).add(target)
        succ.setdefault(target, set())
    return {node: sorted(succ[node]) for node in sorted(succ)}


def find_cycle(edges: Iterable[Edge]) -> list[str] | None:
    """A cycle as a closed path ``[a, b, ..., a]``, or None when there is none."""
    graph = _adjacency(edges)
    state: dict[str, int] = {}  # absent: unvisited, 1: on the current path, 2: done
    for root in graph:
        if root in state:
            continue
        path = [root]
        branches = [iter(graph[root])]
        state[root] = 1
        while branches:
            node = next(branches[-1], None)
            if node is None:
                state[path.pop()] = 2
                branches.pop()
            elif node not in state:
                state[node] = 1
                path.append(node)
                branches.append(iter(graph[node]))
            elif state[node] == 1:
                return [*path[path.index(node) :], node]
    return None


def _components(graph: dict[str, list[str]]) -> dict[str, int]:
    """Strongly connected component of every node (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    component: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            child = next(successors, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = index[node]
                    if member == node:
                        break
    return component


def _shortest_path(graph: dict[str, list[str]], start: str, goal: str) -> list[str]:
    """Breadth-first path ``[start, ..., goal]``; the caller knows that one exists."""
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            break
        for nxt in graph[node]:
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    path = [goal]
    while (previous := parent[path[-1]]) is not None:
        path.append(previous)
    return path[::-1]


def cycle_with(edges: Iterable[Edge], new_edges: Iterable[Edge]) -> list[str] | None:
    """The cycle that adding ``new_edges`` would close, through the first new edge that closes one.

    The path starts at that edge's source: with ``app -> network`` in place, adding
    ``network -> app`` gives ``["network", "app", "network"]``. A cycle already among ``edges``
    and not through a new edge is not reported here.
    """
    added = list(new_edges)
    graph = _adjacency([*edges, *added])
    component = _components(graph)
    for source, target in added:
        if source == target:
            return [source, source]
        if component[source] == component[target]:
            return [source, *_shortest_path(graph, target, source)]
    return None


def format_cycle(path: Iterable[str]) -> str:
    return " -> ".join(path)


def downstream(edges: Iterable[Edge], node: str) -> list[str]:
    """The nodes ``node`` triggers directly."""
    return sorted({target for source, target in edges if source == node})


def upstream(edges: Iterable[Edge], node: str) -> list[str]:
    """The nodes that trigger ``node`` directly."""
    return sorted({source for source, target in edges if target == node})


def descendants(edges: Iterable[Edge], node: str) -> set[str]:
    """Every node reachable from ``node``, never ``node`` itself: a cascade does not redeploy its start."""
    graph = _adjacency(edges)
    seen: set[str] = set()
    queue = deque(graph.get(node, ()))
    while queue:
        current = queue.popleft()
        if current in seen or current == node:
            continue
        seen.add(current)
        queue.extend(graph[current])
    return seen
