"""The graph page's layout: upstream above downstream, no overlaps, every stack once, the same every time."""

from __future__ import annotations

import random
from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from stackcascade.domain.layout import Box, Layout, Spacing, layered

DIAMOND = [
    ("network/prod", "database/prod"),
    ("network/prod", "cluster/prod"),
    ("database/prod", "app/prod"),
    ("cluster/prod", "app/prod"),
]


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str]]]:
    """Random DAGs whose names do not sort in topological order (edges go from a lower rank to a higher)."""
    size = draw(st.integers(min_value=1, max_value=24))
    names = draw(st.permutations([f"p{i:02d}/prod" for i in range(size)]))
    pairs = list(combinations(range(size), 2))
    chosen = draw(st.lists(st.sampled_from(pairs), max_size=60)) if pairs else []
    return list(names), [(names[a], names[b]) for a, b in chosen]


@st.composite
def any_graphs(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str]]]:
    """Anything at all, cycles and self-loops included: a drawing must never hang or lose a stack."""
    names = [f"s{i}" for i in range(draw(st.integers(min_value=0, max_value=12)))]
    if not names:
        return [], []
    node = st.sampled_from(names)
    return names, draw(st.lists(st.tuples(node, node), max_size=40))


def overlaps(a: Box, b: Box) -> bool:
    return a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.y + b.height and b.y < a.y + a.height


def assert_well_formed(layout: Layout, names: list[str], edges: list[tuple[str, str]]) -> None:
    assert sorted(layout.boxes) == sorted(set(names) | {n for edge in edges for n in edge})
    for a, b in combinations(layout.boxes.values(), 2):
        assert not overlaps(a, b), (a, b)
    for box in layout.boxes.values():
        assert box.x >= 0 and box.x + box.width <= layout.width
        assert box.y >= 0 and box.y + box.height <= layout.height
    assert {(r.upstream, r.downstream) for r in layout.routes} == {(u, v) for u, v in edges if u != v}
    assert all(len(route.points) >= 2 for route in layout.routes)


@given(dags())
def test_every_edge_points_down_and_nothing_overlaps(graph: tuple[list[str], list[tuple[str, str]]]) -> None:
    names, edges = graph
    layout = layered(names, edges)
    assert_well_formed(layout, names, edges)
    for upstream, downstream in edges:
        assert layout.boxes[upstream].layer < layout.boxes[downstream].layer
        assert layout.boxes[upstream].y + layout.boxes[upstream].height < layout.boxes[downstream].y
    for route in layout.routes:
        ys = [y for _, y in route.points]
        assert ys == sorted(ys), "a route never climbs"
        assert route.points[0][1] == layout.boxes[route.upstream].y + layout.boxes[route.upstream].height
        assert route.points[-1][1] == layout.boxes[route.downstream].y


@given(dags(), st.randoms(use_true_random=False))
def test_the_same_graph_gives_the_same_drawing_whatever_its_order(
    graph: tuple[list[str], list[tuple[str, str]]], shuffle: random.Random
) -> None:
    names, edges = graph
    first = layered(names, edges)
    shuffled_names, shuffled_edges = list(names), list(edges)
    shuffle.shuffle(shuffled_names)
    shuffle.shuffle(shuffled_edges)
    again = layered(shuffled_names, shuffled_edges)
    assert dict(again.boxes) == dict(first.boxes)
    assert sorted(again.routes, key=str) == sorted(first.routes, key=str)
    assert (again.width, again.height) == (first.width, first.height)


@settings(max_examples=150)
@given(any_graphs())
def test_cycles_and_self_loops_are_drawn_not_hung_on(graph: tuple[list[str], list[tuple[str, str]]]) -> None:
    names, edges = graph
    layout = layered(names, edges)
    assert_well_formed(layout, names, edges)
    for route in layout.routes:
        upper, lower = layout.boxes[route.upstream], layout.boxes[route.downstream]
        assert (upper.layer > lower.layer) if route.backwards else (upper.layer < lower.layer)


def test_the_diamond_has_network_on_top_app_at_the_bottom() -> None:
    layout = layered([], DIAMOND)
    boxes = layout.boxes
    assert [boxes[n].layer for n in ("network/prod", "database/prod", "cluster/prod", "app/prod")] == [0, 1, 1, 2]
    assert boxes["database/prod"].y == boxes["cluster/prod"].y
    assert boxes["network/prod"].y < boxes["database/prod"].y < boxes["app/prod"].y
    # Symmetric: network and app centred between the two in the middle, which sit in name order.
    assert boxes["cluster/prod"].x < boxes["database/prod"].x
    middle = (boxes["cluster/prod"].center_x + boxes["database/prod"].center_x) / 2
    assert boxes["network/prod"].center_x == middle == boxes["app/prod"].center_x
    assert layout.layers == 3 and layout.loose_top is None
    assert all(len(route.points) == 2 for route in layout.routes)  # neighbouring layers: no lanes


def test_two_edges_leaving_a_box_start_side_by_side() -> None:
    routes = {(r.upstream, r.downstream): r for r in layered([], DIAMOND).routes}
    to_cluster = routes[("network/prod", "cluster/prod")].points[0]
    to_database = routes[("network/prod", "database/prod")].points[0]
    assert to_cluster[1] == to_database[1]
    assert to_cluster[0] < to_database[0]


def test_a_long_edge_goes_around_the_layer_it_crosses() -> None:
    spacing = Spacing()
    layout = layered([], [("a", "b"), ("b", "c"), ("a", "c")], spacing)
    route = next(r for r in layout.routes if (r.upstream, r.downstream) == ("a", "c"))
    assert len(route.points) == 4  # bottom of a, through b's layer on a lane, top of c
    (_, _), (lane_x, top), (lane_x2, bottom), (_, _) = route.points
    b = layout.boxes["b"]
    assert lane_x == lane_x2 and (top, bottom) == (b.y, b.y + b.height)
    assert lane_x >= b.x + b.width + spacing.lane_gap or lane_x <= b.x - spacing.lane_gap


def test_a_root_sits_just_above_what_it_triggers() -> None:
    # dns triggers only app: it is drawn beside database, not on the top row beside network.
    layout = layered([], [("network", "database"), ("database", "app"), ("dns", "app")])
    assert layout.boxes["dns"].layer == layout.boxes["database"].layer == 1


def test_stacks_without_edges_go_in_a_grid_beneath_the_graph() -> None:
    spacing = Spacing(loose_columns=3)
    loose = [f"lone{i}" for i in range(7)]
    layout = layered(["network", "app", *loose], [("network", "app")], spacing)
    assert layout.loose_top is not None
    assert layout.loose_top > layout.boxes["app"].y + layout.boxes["app"].height
    rows = sorted({layout.boxes[name].y for name in loose})
    assert len(rows) == 3  # 7 stacks, 3 to a row
    assert all(layout.boxes[name].y >= layout.loose_top for name in loose)


def test_only_stacks_without_edges_make_only_a_grid() -> None:
    layout = layered(["b", "a", "c"], [], Spacing(loose_columns=8))
    assert [layout.boxes[n].x for n in ("a", "b", "c")] == sorted(layout.boxes[n].x for n in ("a", "b", "c"))
    assert len({box.y for box in layout.boxes.values()}) == 1
    assert layout.layers == 0


def test_nothing_to_draw_is_an_empty_drawing() -> None:
    layout = layered([], [])
    assert layout.boxes == {} and layout.routes == () and layout.width > 0 and layout.height > 0


def test_a_two_stack_cycle_is_drawn_with_one_edge_turned_round() -> None:
    layout = layered([], [("a", "b"), ("b", "a")])
    backwards = [r for r in layout.routes if r.backwards]
    assert len(backwards) == 1 and len(layout.routes) == 2


def test_two_hundred_stacks_and_six_hundred_edges_are_all_placed_and_routed() -> None:
    """Size only; how fast it is belongs to bench/console_pages.py (the graph page), not to a test."""
    chooser = random.Random(6)
    names = [f"project{i:03d}/prod" for i in range(200)]
    chooser.shuffle(names)
    edges: set[tuple[str, str]] = set()
    while len(edges) < 600:
        a, b = sorted(chooser.sample(range(200), 2))
        edges.add((names[a], names[b]))
    layout = layered(names, edges)
    assert len(layout.boxes) == 200 and len(layout.routes) == 600
