"""The organization's deployment graph: cycles, neighbours, reach and waves."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from stackcascade.domain.graph import (
    cycle_with,
    descendants,
    downstream,
    find_cycle,
    format_cycle,
    upstream,
)

NODES = st.sampled_from([f"p/s{i}" for i in range(8)])
EDGES = st.lists(st.tuples(NODES, NODES), max_size=25)


def is_closed_path_of(path: list[str], edges: list[tuple[str, str]]) -> bool:
    pairs = set(edges)
    return len(path) >= 2 and path[0] == path[-1] and all(pair in pairs for pair in pairwise(path))


def reachable(edges: list[tuple[str, str]], start: str) -> set[str]:
    """Reference implementation: repeat until nothing changes."""
    seen = {t for s, t in edges if s == start}
    while True:
        more = {t for s, t in edges if s in seen} - seen
        if not more:
            return seen - {start}
        seen |= more


# find_cycle


def test_no_edges_no_cycle() -> None:
    assert find_cycle([]) is None


def test_a_chain_or_a_diamond_has_no_cycle() -> None:
    assert find_cycle([("a", "b"), ("b", "c")]) is None
    assert find_cycle([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]) is None


def test_a_self_loop_is_a_cycle_of_one() -> None:
    assert find_cycle([("a", "a")]) == ["a", "a"]


def test_a_two_node_cycle_is_a_closed_path() -> None:
    assert find_cycle([("network", "app"), ("app", "network")]) == ["app", "network", "app"]


def test_the_cycle_leaves_out_the_path_that_led_to_it() -> None:
    assert find_cycle([("a", "b"), ("b", "c"), ("c", "d"), ("d", "b")]) == ["b", "c", "d", "b"]


def test_find_cycle_is_deterministic_whatever_the_edge_order() -> None:
    edges = [("a", "b"), ("b", "a"), ("c", "d"), ("d", "c")]
    assert find_cycle(edges) == find_cycle(list(reversed(edges))) == ["a", "b", "a"]


def test_find_cycle_accepts_a_generator() -> None:
    assert find_cycle(e for e in [("a", "b"), ("b", "a")]) == ["a", "b", "a"]


@given(EDGES)
def test_find_cycle_finds_a_real_cycle_exactly_when_topological_sort_fails(edges: list[tuple[str, str]]) -> None:
    cycle = find_cycle(edges)
    nodes = {n for e in edges for n in e}
    sorter: TopologicalSorter[str] = TopologicalSorter({node: set() for node in nodes})
    for source, target in edges:
        sorter.add(target, source)
    try:
        sorter.prepare()
    except CycleError:
        assert cycle is not None
        assert is_closed_path_of(cycle, edges)
        assert len(set(cycle)) == len(cycle) - 1  # a simple cycle
    else:
        assert cycle is None


# cycle_with


def test_the_example_from_the_design() -> None:
    assert cycle_with([("app", "network")], [("network", "app")]) == ["network", "app", "network"]


def test_an_edge_that_closes_nothing_gives_none() -> None:
    assert cycle_with([("a", "b")], [("b", "c")]) is None
    assert cycle_with([], []) is None


def test_a_new_self_loop_is_a_cycle() -> None:
    assert cycle_with([("a", "b")], [("a", "a")]) == ["a", "a"]


def test_the_cycle_runs_through_the_new_edge_from_its_source() -> None:
    existing = [("a", "b"), ("b", "c"), ("c", "d")]
    assert cycle_with(existing, [("d", "a")]) == ["d", "a", "b", "c", "d"]


def test_the_shortest_way_back_is_shown() -> None:
    existing = [("b", "x"), ("x", "y"), ("y", "a"), ("b", "a")]
    assert cycle_with(existing, [("a", "b")]) == ["a", "b", "a"]


def test_two_new_edges_can_close_a_cycle_together() -> None:
    assert cycle_with([], [("a", "b"), ("b", "a")]) == ["a", "b", "a"]


def test_the_first_new_edge_that_closes_a_cycle_is_reported() -> None:
    existing = [("a", "b"), ("c", "d")]
    assert cycle_with(existing, [("x", "y"), ("d", "c"), ("b", "a")]) == ["d", "c", "d"]


def test_an_old_cycle_is_not_blamed_on_an_unrelated_new_edge() -> None:
    assert cycle_with([("a", "b"), ("b", "a")], [("c", "d")]) is None


def test_a_new_edge_between_nodes_already_on_a_cycle_closes_another() -> None:
    assert cycle_with([("a", "b"), ("b", "c"), ("c", "a")], [("a", "c")]) == ["a", "c", "a"]


@given(EDGES, st.lists(st.tuples(NODES, NODES), min_size=1, max_size=3))
def test_cycle_with_reports_a_real_cycle_through_a_new_edge(
    edges: list[tuple[str, str]], new: list[tuple[str, str]]
) -> None:
    cycle = cycle_with(edges, new)
    if cycle is None:
        for source, target in new:
            assert source != target
            assert source not in reachable([*edges, *new], target)
    else:
        assert is_closed_path_of(cycle, [*edges, *new])
        assert (cycle[0], cycle[1]) in new


@given(EDGES.filter(lambda e: find_cycle(e) is None), st.tuples(NODES, NODES))
def test_on_an_acyclic_graph_cycle_with_agrees_with_find_cycle(
    edges: list[tuple[str, str]], new: tuple[str, str]
) -> None:
    assert (cycle_with(edges, [new]) is None) is (find_cycle([*edges, new]) is None)


def test_format_cycle_joins_with_arrows() -> None:
    assert format_cycle(["network", "app", "network"]) == "network -> app -> network"
    assert format_cycle(iter(["a", "a"])) == "a -> a"


# size


def test_a_long_chain_closing_a_cycle_is_found_without_recursion() -> None:
    chain = [(f"p/s{i}", f"p/s{i + 1}") for i in range(4999)]
    assert find_cycle(chain) is None
    cycle = find_cycle([*chain, ("p/s4999", "p/s0")])
    closing = cycle_with(chain, [("p/s4999", "p/s0")])
    assert cycle is not None
    assert len(cycle) == 5001
    assert cycle[0] == cycle[-1]
    assert closing is not None
    assert closing[:2] == ["p/s4999", "p/s0"]
    assert closing[-1] == "p/s4999"
    assert len(closing) == 5001


def test_ten_thousand_edges_are_handled() -> None:
    edges = [(f"p/n{i}", f"p/n{j}") for i in range(2000) for j in range(i + 1, min(i + 6, 2000))]
    assert len(edges) >= 9_900
    assert find_cycle(edges) is None
    assert cycle_with(edges, [("p/n1999", "p/n0")]) is not None
    assert len(descendants(edges, "p/n0")) == 1999


# neighbours and reach


GRAPH = [("net", "app"), ("net", "db"), ("db", "app"), ("app", "web"), ("other", "db")]


def test_downstream_is_the_direct_targets_sorted() -> None:
    assert downstream(GRAPH, "net") == ["app", "db"]
    assert downstream(GRAPH, "web") == []
    assert downstream(GRAPH, "missing") == []


def test_upstream_is_the_direct_sources_sorted() -> None:
    assert upstream(GRAPH, "app") == ["db", "net"]
    assert upstream(GRAPH, "db") == ["net", "other"]
    assert upstream(GRAPH, "net") == []


def test_duplicate_edges_count_once() -> None:
    assert downstream([("a", "b"), ("a", "b")], "a") == ["b"]
    assert upstream([("a", "b"), ("a", "b")], "b") == ["a"]


def test_descendants_are_everything_reachable() -> None:
    assert descendants(GRAPH, "net") == {"app", "db", "web"}
    assert descendants(GRAPH, "db") == {"app", "web"}
    assert descendants(GRAPH, "web") == set()
    assert descendants(GRAPH, "missing") == set()


def test_descendants_never_include_the_start_even_on_a_cycle() -> None:
    assert descendants([("a", "b"), ("b", "a"), ("b", "c")], "a") == {"b", "c"}
    assert descendants([("a", "a")], "a") == set()


@given(EDGES, NODES)
def test_descendants_match_the_reference(edges: list[tuple[str, str]], node: str) -> None:
    assert descendants(edges, node) == reachable(edges, node)
