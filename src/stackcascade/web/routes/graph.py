"""``/{org}/~/graph``: the deployment graph drawn on the server as SVG, upstream stacks above downstream.

The page works without script (the SVG is simply there, scrollable); ``graph.js`` adds pan and zoom and
keeps the nodes current: on every live change it fetches ``graph/state`` (a few bytes per stack) and
repaints the nodes, and only when stacks or edges changed does it fetch the drawing again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse

from stackcascade.domain.layout import Layout, Point, Route, Spacing, layered
from stackcascade.services import graph_view
from stackcascade.web import urls
from stackcascade.web.pages import ENV, fragment, render, status_class, status_label
from stackcascade.web.routing import console_router
from stackcascade.web.session import Viewer

router = console_router()

SPACING = Spacing()
NAME_CHARS = 22  # what fits on the first line of a box at the node font size
GATED_NAME_CHARS = 19  # ... beside the lock of a stack that always needs an approval
# On the graph a wait is always a cascade's: the stack runs once the stacks above it have finished.
LABELS = {"waiting": "waiting for upstream"}


@dataclass(frozen=True, slots=True)
class NodeState:
    """Everything about a node that changes while a cascade runs (the JSON ``graph.js`` applies)."""

    status: str
    label: str
    cls: str
    flags: str
    paused: bool
    gated: bool
    name: str  # the accessible name of the node's link


@dataclass(frozen=True, slots=True)
class NodeView:
    stack: str
    text: str  # the name, shortened to fit the box
    href: str
    x: float
    y: float
    state: NodeState


@dataclass(frozen=True, slots=True)
class EdgeView:
    upstream: str
    downstream: str
    path: str
    conditional: bool  # only when the upstream's outputs changed
    gated: bool  # the downstream waits for an approval
    backwards: bool
    label_at: Point
    gate_at: Point
    when: str  # "after update succeeded, only if its outputs changed"

    @property
    def title(self) -> str:
        return f"{self.upstream} deploys {self.downstream} {self.when}"


@dataclass(frozen=True, slots=True)
class Drawing:
    width: float
    height: float
    nodes: list[NodeView]
    edges: list[EdgeView]
    loose_top: float | None
    connected: bool  # at least one edge: else the page says how to add one
    shape: str
    spacing: Spacing


def node_state(node: graph_view.Node) -> NodeState:
    key = node.status or "never"
    label = LABELS.get(node.status or "", status_label(node.status))
    flags = [text for text, on in (("paused", node.paused), ("approval required", node.require_approval)) if on]
    name = ", ".join([node.stack, label, *flags])
    return NodeState(
        status=key,
        label=label,
        cls=status_class(node.status),
        flags=" · ".join(flags),
        paused=node.paused,
        gated=node.require_approval,
        name=name,
    )


def _shorten(name: str, room: int) -> str:
    return name if len(name) <= room else name[: room - 1] + "…"


def _path(points: tuple[Point, ...]) -> str:
    """Straight down a lane, a smooth S-curve between layers (vertical at both ends, so arrows point in)."""
    (x, y), *rest = points
    parts = [f"M{x:g} {y:g}"]
    for nx, ny in rest:
        if nx == x:
            parts.append(f"L{nx:g} {ny:g}")
        else:
            mid = (y + ny) / 2
            parts.append(f"C{x:g} {mid:g} {nx:g} {mid:g} {nx:g} {ny:g}")
        x, y = nx, ny
    return " ".join(parts)


def _along_last_hop(route: Route, share: float) -> Point:
    (x1, y1), (x2, y2) = route.points[-2], route.points[-1]
    return (round(x1 + (x2 - x1) * share, 1), round(y1 + (y2 - y1) * share, 1))


def _describe(edges: list[graph_view.Edge]) -> tuple[bool, bool, str]:
    """One arrow for every webhook between the same two stacks: conditional only when all of them are."""
    conditional = all(e.trigger_on == "outputs-changed" for e in edges)
    gated = any(e.require_approval for e in edges)
    clauses = []
    for edge in edges:
        events = ", ".join(f.replace("_", " ") for f in (*edge.filters, *edge.groups)) or "any event"
        clause = f"after {events}"
        if edge.trigger_on == "outputs-changed":
            clause += ", only if its outputs changed"
        if edge.require_approval:
            clause += ", once approved"
        clauses.append(clause)
    return conditional, gated, "; or ".join(clauses)


def draw(org: str, view: graph_view.GraphView, spacing: Spacing = SPACING) -> Drawing:
    by_pair: dict[tuple[str, str], list[graph_view.Edge]] = {}
    for edge in view.edges:
        by_pair.setdefault((edge.upstream, edge.downstream), []).append(edge)
    layout: Layout = layered((n.stack for n in view.nodes), by_pair, spacing)
    nodes = [
        NodeView(
            stack=node.stack,
            text=_shorten(node.stack, GATED_NAME_CHARS if node.require_approval else NAME_CHARS),
            href=urls.stack_ref(org, node.stack),
            x=layout.boxes[node.stack].x,
            y=layout.boxes[node.stack].y,
            state=node_state(node),
        )
        for node in view.nodes
    ]
    edges = []
    for route in layout.routes:
        conditional, gated, when = _describe(by_pair[(route.upstream, route.downstream)])
        edges.append(
            EdgeView(
                upstream=route.upstream,
                downstream=route.downstream,
                path=_path(route.points),
                conditional=conditional,
                gated=gated,
                backwards=route.backwards,
                label_at=_along_last_hop(route, 0.5),
                gate_at=_along_last_hop(route, 0.78),
                when=when,
            )
        )
    return Drawing(
        width=layout.width,
        height=layout.height,
        nodes=nodes,
        edges=edges,
        loose_top=layout.loose_top if layout.layers else None,
        connected=bool(edges),
        shape=view.shape,
        spacing=spacing,
    )


@router.get("/{org}/~/graph")
async def graph_page(request: Request, org: str, principal: Viewer) -> HTMLResponse:
    view = await graph_view.load(request.app.state.context, principal, org)
    return render(request, "graph.html", org=org, section="graph", view=view, drawing=draw(org, view))


@router.get("/{org}/~/graph/drawing")
async def graph_drawing(request: Request, org: str, principal: Viewer) -> HTMLResponse:
    """The SVG and the edge list alone, for the page to swap in when stacks or edges changed."""
    view = await graph_view.load(request.app.state.context, principal, org)
    return fragment("graph_drawing.html", org=org, view=view, drawing=draw(org, view))


@router.get("/{org}/~/graph/state")
async def graph_state(request: Request, org: str, principal: Viewer) -> JSONResponse:
    """Each node's state, the running cascades (as HTML) and the shape of the drawing."""
    view = await graph_view.load(request.app.state.context, principal, org)
    body = {
        "shape": view.shape,
        "nodes": {node.stack: asdict(node_state(node)) for node in view.nodes},
        "cascades": ENV.get_template("graph_cascades.html").render(org=org, view=view),
    }
    return JSONResponse(body, headers={"cache-control": "no-store"})
