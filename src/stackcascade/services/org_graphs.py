"""Each org's deployment graph indexed for planning, kept per process while the org's graph version holds.

A stack near the top of a 10,000-stack org starts a cascade of about 8,000 members over 25,000 edges.
Reading and indexing the org's edges costs most of a second, planning over the index a few tens of
milliseconds. Every transaction that changes an org's stack webhooks or deletes one of its stacks raises
the org's ``graph_version`` and logs whose edges changed (``store.orgs.graph_changed``). An index is only
used at the version it was built at, so every process sees every change, made by any replica, at its
next read; it catches up by re-reading the changed stacks' edges, or reads the whole graph again when
the log cannot say (a deleted stack, a change pruned from the log, too many changes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from stackcascade.domain.cascade import Edge, EdgeIndex, TriggerOn, index_edges, reindex
from stackcascade.services.plan_documents import edge_json, edges_json
from stackcascade.store import cascades as cascade_rows
from stackcascade.store import orgs as org_rows

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class OrgGraph:
    """An org's active deployment edges at one ``version``: indexed, with the stacks' ids and each edge's JSON."""

    version: int
    index: EdgeIndex
    stack_ids: Mapping[str, str]  # "project/stack" -> id, for every stack at an end of an edge
    names: Mapping[str, str]  # the other way round
    _json: Mapping[int, str]  # id() of each edge of ``index`` -> its JSON; the index keeps them alive

    def edges_json(self, edges: Sequence[Edge]) -> str:
        """The edges' JSON, comma-separated, as ``plan_documents.edges_json`` writes it.

        The JSON of this graph's own edges was written when the graph was read. An id() found here is one
        of those edges: they are alive (the index holds them), so no other object can have that id.
        """
        parts = list(map(self._json.get, map(id, edges)))
        if None in parts:
            return edges_json(edges)
        return ",".join(cast("list[str]", parts))


def edge_of(spec: Any) -> Edge:
    """The planner's edge from a ``store.cascades.edge_specs`` row."""
    return Edge(
        spec.upstream,
        spec.downstream,
        tuple(spec.filters),
        tuple(spec.groups),
        TriggerOn(spec.trigger_on),
        bool(spec.require_approval),
    )


def _build(version: int, specs: list[Any]) -> OrgGraph:
    index = index_edges(_interned(specs))
    stack_ids = _stack_ids(specs)
    written = {id(edge): edge_json(edge) for edges in index.outgoing.values() for edge in edges}
    return OrgGraph(version, index, stack_ids, {v: k for k, v in stack_ids.items()}, written)


def _caught_up(graph: OrgGraph, version: int, changed: set[str], specs: list[Any]) -> OrgGraph:
    """``graph`` with the outgoing edges of the ``changed`` stacks (ids) replaced by those in ``specs``."""
    stack_ids = dict(graph.stack_ids) | _stack_ids(specs)
    names = dict(graph.names) | {v: k for k, v in stack_ids.items()}
    replaced: dict[str, list[Edge]] = {names[stack_id]: [] for stack_id in changed if stack_id in names}
    for edge in _interned(specs):
        replaced[edge.upstream].append(edge)
    index = reindex(graph.index, replaced)
    written = dict(graph._json)
    for upstream in replaced:
        for edge in graph.index.outgoing.get(upstream, ()):
            written.pop(id(edge), None)
        for edge in index.outgoing.get(upstream, ()):
            written[id(edge)] = edge_json(edge)
    return OrgGraph(version, index, stack_ids, names, written)


def _stack_ids(specs: list[Any]) -> dict[str, str]:
    return {s.upstream: s.upstream_id for s in specs} | {s.downstream: s.downstream_id for s in specs}


def _interned(specs: list[Any]) -> list[Edge]:
    """Edges whose filter and group tuples are shared: most edges of an org listen to the same events."""
    seen: dict[tuple[str, ...], tuple[str, ...]] = {}
    edges = []
    for spec in specs:
        filters, groups = tuple(spec.filters), tuple(spec.groups)
        edges.append(
            Edge(
                spec.upstream,
                spec.downstream,
                seen.setdefault(filters, filters),
                seen.setdefault(groups, groups),
                TriggerOn(spec.trigger_on),
                bool(spec.require_approval),
            )
        )
    return edges


class OrgGraphs:
    """The newest ``OrgGraph`` of recently planned orgs, least recently used out first.

    ``full_reads`` and ``catch_ups`` count how each stale or missing graph was brought up to date.
    """

    MAX_CATCH_UP = 200  # more changes than this: reading the whole graph is about as fast

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._graphs: OrderedDict[str, OrgGraph] = OrderedDict()
        self.full_reads = 0
        self.catch_ups = 0

    async def current(self, conn: AsyncConnection, org: str) -> OrgGraph:
        """The org's graph as ``conn`` sees it now: from memory if its version still holds, else read."""
        # The version is read first: a change committed after it makes the graph built here newer than its
        # version says, never older, and the next read catches up from that version again.
        version = await org_rows.graph_version(conn, org)
        held = self._graphs.get(org)
        if held is not None and held.version == version:
            self._graphs.move_to_end(org)
            return held
        graph = None
        if held is not None and held.version < version <= held.version + self.MAX_CATCH_UP:
            graph = await self._catch_up(conn, org, held, version)
        if graph is None:
            self.full_reads += 1
            graph = _build(version, await cascade_rows.edge_specs(conn, org))
        self._graphs[org] = graph
        self._graphs.move_to_end(org)
        if len(self._graphs) > self._size:
            self._graphs.popitem(last=False)
        return graph

    async def cached(self, conn: AsyncConnection, org: str) -> OrgGraph | None:
        """The org's graph if this process holds it at the current version; never reads the edges."""
        held = self._graphs.get(org)
        if held is None or held.version != await org_rows.graph_version(conn, org):
            return None
        self._graphs.move_to_end(org)
        return held

    async def _catch_up(self, conn: AsyncConnection, org: str, held: OrgGraph, version: int) -> OrgGraph | None:
        """``held`` brought to ``version`` from the change log, or None when the log cannot tell how."""
        logged = await org_rows.graph_changes_since(conn, org, held.version)
        changes = [(v, stack_id) for v, stack_id in logged if v <= version]
        if [v for v, _ in changes] != list(range(held.version + 1, version + 1)):
            return None  # pruned from the log (or a row is missing): read everything
        if any(stack_id is None for _, stack_id in changes):
            return None  # a stack was deleted: edges into it went too, from stacks the log does not name
        changed = {stack_id for _, stack_id in changes if stack_id is not None}
        self.catch_ups += 1
        return _caught_up(held, version, changed, await cascade_rows.edge_specs_from(conn, org, changed))
