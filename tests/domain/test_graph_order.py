"""The topological order kept edge by edge: it admits exactly the acyclic edges and stays topological."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackcascade.domain.errors import Conflict
from stackcascade.domain.graph import cycle_with
from stackcascade.domain.graph_order import needs_search, numbered, reorder


class OrderedGraph:
    """Edges added one by one the way services.graph_order does, with the walks done in memory."""

    def __init__(self, nodes: list[str]) -> None:
        self.order = numbered(nodes, [])
        self.edges: set[tuple[str, str]] = set()
        self.searches = 0

    def _walk(self, start: str, bound: int, *, down: bool) -> dict[str, int]:
        found = {start: self.order[start]}
        frontier = [start]
        while frontier:
            stack = frontier.pop()
            near = [d for u, d in self.edges if u == stack] if down else [u for u, d in self.edges if d == stack]
            for other in near:
                inside = self.order[other] <= bound if down else self.order[other] >= bound
                if inside and other not in found:
                    found[other] = self.order[other]
                    frontier.append(other)
        return found

    def add(self, source: str, target: str) -> bool:
        if source == target:
            return False
        if needs_search(self.order[source], self.order[target]):
            self.searches += 1
            descendants = self._walk(target, self.order[source], down=True)
            if source in descendants:
                return False
            ancestors = self._walk(source, self.order[target], down=False)
            changes = reorder(ancestors, descendants)
            assert changes is not None  # this order has no ties
            self.order.update(changes)
        self.edges.add((source, target))
        return True


pairs = st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(pairs)
def test_edges_are_admitted_exactly_when_they_close_no_cycle_and_the_order_stays_topological(
    candidates: list[tuple[int, int]],
) -> None:
    nodes = [f"s{i:02d}/prod" for i in range(12)]
    graph = OrderedGraph(nodes)
    for a, b in candidates:
        source, target = nodes[a], nodes[b]
        closes_cycle = source == target or cycle_with(sorted(graph.edges), [(source, target)]) is not None
        assert graph.add(source, target) is not closes_cycle
        assert all(graph.order[u] < graph.order[d] for u, d in graph.edges)
        assert sorted(graph.order.values()) == list(range(len(nodes)))  # the same numbers, moved around


def test_an_edge_down_the_order_needs_no_search() -> None:
    graph = OrderedGraph(["a", "b", "c"])
    assert graph.add("a", "b") and graph.add("b", "c") and graph.add("a", "c")
    assert graph.searches == 0
    assert graph.add("c", "a") is False


def test_an_edge_up_the_order_moves_only_the_stacks_between_its_ends() -> None:
    graph = OrderedGraph(["a", "b", "c", "d", "e"])  # numbered 0..4 by name
    graph.add("d", "e")
    before = dict(graph.order)
    assert graph.add("d", "b")  # d (3) above b (1): d moves before b, c and e stay
    assert graph.order["d"] < graph.order["b"]
    assert graph.order["a"] == before["a"] and graph.order["e"] == before["e"]


def test_numbering_follows_the_edges_and_refuses_a_cycle() -> None:
    order = numbered(["z", "y", "x"], [("z", "y"), ("y", "x")])
    assert order["z"] < order["y"] < order["x"]
    with pytest.raises(Conflict, match="cycle"):
        numbered(["a", "b"], [("a", "b"), ("b", "a")])


def test_reorder_gives_up_on_ties() -> None:
    assert reorder({"a": 3}, {"b": 3}) is None
    assert reorder({"a": 3}, {"b": 1}) == {"a": 1, "b": 3}
