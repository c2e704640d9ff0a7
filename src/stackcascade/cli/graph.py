"""``cascade graph``: an organization's deployment graph as text, Mermaid, Graphviz DOT or the API's JSON.

The renderers are pure functions of the API's graph document (``{"nodes": [...], "edges": [...]}``), so
they can be checked without a server. Stack names are quoted for each format, whatever they contain.
"""

from __future__ import annotations

import graphlib
import json
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated

import typer

from stackcascade.cli.client import Json
from stackcascade.cli.connection import JsonOption, OrgOption, ServerOption, TokenOption, connect
from stackcascade.cli.errors import CliError, reports_errors
from stackcascade.cli.output import print_json

DEFAULT_EVENTS = ("update_succeeded",)  # what a deployment edge listens to unless told otherwise: not worth a label


class GraphFormat(StrEnum):
    TEXT = "text"
    MERMAID = "mermaid"
    DOT = "dot"
    JSON = "json"


class GraphCycle(ValueError):
    """The edges form a cycle, so there are no layers (the server refuses such edges)."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__(" -> ".join(cycle))
        self.cycle = cycle


# -- reading the document ----------------------------------------------------------------------------------------


def _nodes(graph: Json) -> list[Json]:
    return [node for node in graph.get("nodes") or [] if isinstance(node, dict) and node.get("stack")]


def _edges(graph: Json) -> list[Json]:
    edges = [e for e in graph.get("edges") or [] if isinstance(e, dict) and e.get("upstream") and e.get("downstream")]
    return sorted(edges, key=lambda e: (str(e["upstream"]), str(e["downstream"])))


def _stacks(graph: Json) -> list[str]:
    """Every stack: the nodes, then any edge end the nodes do not list, sorted."""
    names = {str(node["stack"]) for node in _nodes(graph)}
    for edge in _edges(graph):
        names.update((str(edge["upstream"]), str(edge["downstream"])))
    return sorted(names)


def layers(graph: Json) -> list[list[str]]:
    """The connected stacks in layers: a stack's layer is one more than its latest upstream's (each sorted).

    Stacks without any edge are left out (``unconnected`` lists them). Raises GraphCycle on a cycle.
    """
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for edge in _edges(graph):
        sorter.add(str(edge["downstream"]), str(edge["upstream"]))
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        raise GraphCycle([str(name) for name in exc.args[1]]) from None
    result: list[list[str]] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        result.append(ready)
        sorter.done(*ready)
    return result


def unconnected(graph: Json) -> list[str]:
    connected = {str(e["upstream"]) for e in _edges(graph)} | {str(e["downstream"]) for e in _edges(graph)}
    return [stack for stack in _stacks(graph) if stack not in connected]


def _events_note(edge: Json) -> str:
    """``on deployment_failed``, ``on stacks (group)``, ``on every event``; "" for the default (update_succeeded)."""
    filters = [str(f) for f in edge.get("filters") or []]
    groups = [str(g) for g in edge.get("groups") or []]
    if not filters and not groups:
        return "on every event"
    if (filters, groups) == (list(DEFAULT_EVENTS), []):
        return ""
    return "on " + ", ".join([*(f"{group} (group)" for group in groups), *filters])


def edge_notes(edge: Json) -> list[str]:
    """What is special about an edge: its events when not just update_succeeded, pruning, a gate."""
    notes = [note] if (note := _events_note(edge)) else []
    if edge.get("triggerOn") == "outputs-changed":
        notes.append("if outputs changed")
    if edge.get("requireApproval"):
        notes.append("approval required")
    return notes


def _diagram_label(edge: Json) -> str:
    """Mermaid and DOT label the edges that do not simply fire on update_succeeded: other events, pruned, gated.

    Plain text: each renderer quotes and escapes it for its format.
    """
    notes = [note] if (note := _events_note(edge)) else []
    if edge.get("triggerOn") == "outputs-changed":
        notes.append("outputs changed")
    if edge.get("requireApproval"):
        notes.append("approval required")
    return "; ".join(notes)


def _node_notes(node: Json | None) -> str:
    if node is None:
        return "not a stack of this organization"
    notes = [str(node.get("lastStatus") or "never deployed")]
    if node.get("paused"):
        notes.append("paused")
    if node.get("requireApproval"):
        notes.append("approval required")
    return ", ".join(notes)


# -- text --------------------------------------------------------------------------------------------------------


def render_text(graph: Json, *, org: str | None = None) -> str:
    """Layers of stacks, each with its state and its edges to the stacks below it."""
    nodes = {str(node["stack"]): node for node in _nodes(graph)}
    edges = _edges(graph)
    stacks = _stacks(graph)
    title = f"Deployment graph of {org}" if org else "Deployment graph"
    lines = [f"{title}: {_count(len(stacks), 'stack')}, {_count(len(edges), 'edge')}"]
    if not edges:
        lines.append("No deployment edges.")
    width = max((len(stack) for stack in stacks), default=0)
    for index, layer in enumerate(layers(graph)):
        lines.append(f"layer {index}")
        for stack in layer:
            lines.append(f"  {stack.ljust(width)}  ({_node_notes(nodes.get(stack))})")
            for edge in (e for e in edges if e["upstream"] == stack):
                notes = edge_notes(edge)
                lines.append(f"    -> {edge['downstream']}" + (f"  [{'; '.join(notes)}]" if notes else ""))
    lonely = unconnected(graph)
    if lonely:
        lines.append("not connected")
        lines.extend(f"  {stack.ljust(width)}  ({_node_notes(nodes.get(stack))})" for stack in lonely)
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


# -- Mermaid -----------------------------------------------------------------------------------------------------

_MERMAID_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "\n": " ", "\r": " "}
_STATUS_COLOURS = {  # a stack's last deployment status: (fill, border)
    "succeeded": ("#e6f4ea", "#1e8e3e"),
    "failed": ("#fce8e6", "#d93025"),
    "running": ("#fef7e0", "#f9ab00"),
}


def mermaid_text(text: str) -> str:
    """A label inside Mermaid's double quotes: quotes, HTML and ``#`` become Mermaid entity codes."""
    return "".join(_MERMAID_ESCAPES.get(char, char) for char in text)


def _ids(stacks: Iterable[str]) -> dict[str, str]:
    """Node ids that are always valid (``n0``, ``n1``...): names become labels, never syntax."""
    return {stack: f"n{index}" for index, stack in enumerate(stacks)}


def render_mermaid(graph: Json) -> str:
    """``flowchart TD``; edges labelled with their events (other than update_succeeded), pruning and gate."""
    nodes = {str(node["stack"]): node for node in _nodes(graph)}
    ids = _ids(_stacks(graph))
    lines = ["flowchart TD"]
    for stack, node_id in ids.items():
        node = nodes.get(stack)
        label = mermaid_text(stack)
        if node is not None and node.get("requireApproval"):
            lines.append(f'    {node_id}{{{{"{label}"}}}}')  # a hexagon: this stack waits for an approval
        else:
            lines.append(f'    {node_id}["{label}"]')
    for edge in _edges(graph):
        label = _diagram_label(edge)
        arrow = f'-->|"{mermaid_text(label)}"|' if label else "-->"
        lines.append(f"    {ids[str(edge['upstream'])]} {arrow} {ids[str(edge['downstream'])]}")
    for status, (fill, border) in _STATUS_COLOURS.items():
        coloured = [node_id for stack, node_id in ids.items() if (nodes.get(stack) or {}).get("lastStatus") == status]
        if coloured:
            lines.append(f"    classDef {status} fill:{fill},stroke:{border}")
            lines.append(f"    class {','.join(coloured)} {status}")
    return "\n".join(lines)


# -- Graphviz DOT ------------------------------------------------------------------------------------------------


def dot_string(text: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, line breaks as ``\\n``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n")
    return f'"{escaped}"'


def render_dot(graph: Json, *, org: str | None = None) -> str:
    """A ``digraph``: boxes for stacks (double border when it needs approval), special edges labelled as in Mermaid."""
    nodes = {str(node["stack"]): node for node in _nodes(graph)}
    lines = [f"digraph {dot_string(org or 'deployments')} {{", "  rankdir=TB;", "  node [shape=box];"]
    for stack in _stacks(graph):
        node = nodes.get(stack) or {}
        attributes: list[str] = []
        if node.get("requireApproval"):
            attributes.append("peripheries=2")
        colours = _STATUS_COLOURS.get(str(node.get("lastStatus")))
        if colours is not None:
            attributes.extend(
                ["style=filled", f"fillcolor={dot_string(colours[0])}", f"color={dot_string(colours[1])}"]
            )
        lines.append(f"  {dot_string(stack)}" + (f" [{', '.join(attributes)}]" if attributes else "") + ";")
    for edge in _edges(graph):
        attributes = []
        label = _diagram_label(edge)
        if label:
            attributes.append(f"label={dot_string(label)}")
        if edge.get("triggerOn") == "outputs-changed":
            attributes.append("style=dashed")
        end = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"  {dot_string(str(edge['upstream']))} -> {dot_string(str(edge['downstream']))}{end};")
    lines.append("}")
    return "\n".join(lines)


def render(graph: Json, graph_format: GraphFormat, *, org: str | None = None) -> str:
    """The document in ``graph_format`` (JSON as the API sent it)."""
    if graph_format is GraphFormat.TEXT:
        return render_text(graph, org=org)
    if graph_format is GraphFormat.MERMAID:
        return render_mermaid(graph)
    if graph_format is GraphFormat.DOT:
        return render_dot(graph, org=org)
    return json.dumps(graph, indent=2, ensure_ascii=False)


# -- the command -------------------------------------------------------------------------------------------------


@reports_errors
def graph(
    graph_format: Annotated[
        GraphFormat,
        typer.Option("--format", help="text (layers), mermaid (flowchart), dot (Graphviz) or json (the API's answer)."),
    ] = GraphFormat.TEXT,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the organization's deployment graph: every stack and every deployment edge between them."""
    if as_json and graph_format not in (GraphFormat.TEXT, GraphFormat.JSON):
        raise CliError(f"give --json or --format {graph_format.value}, not both")
    conn = connect(server, token, org)
    name = conn.require_org()
    with conn.client() as api:
        document = api.deployment_graph(name)
    if as_json or graph_format is GraphFormat.JSON:
        print_json(document)
        return
    try:
        typer.echo(render(document, graph_format, org=name))
    except GraphCycle as exc:
        raise CliError(
            f"the deployment graph of {name} has a cycle ({exc}); see it with --format mermaid or --format dot"
        ) from None
