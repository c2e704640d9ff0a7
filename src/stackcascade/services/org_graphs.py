"""Each org's deployment graph indexed for planning, kept per process while the org's graph version holds.

A stack near the top of a 10,000-stack org starts a cascade of about 8,000 members over 25,000 edges.
Reading and indexing the org's edges costs most of a second, planning over the index a few tens of
milliseconds. Every transaction that changes an org's stack webhooks or deletes one of its stacks raises
the org's ``graph_version`` and logs whose edges changed (``store.orgs.graph_changed``). A held graph is
used only while no change was logged after its version, so every process sees every change, made by any
replica, at its next read; it catches up by re-reading the changed stacks' edges, or reads the whole
graph again when the log cannot say (changes pruned from the log). The process that made
a change catches up right after committing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any, cast

from stackcascade.domain.cascade import Edge, EdgeIndex, Plan, TriggerOn, index_edges, reindex
from stackcascade.services.plan_documents import edge_json, edges_json, json_string, plan_json, to_json
from stackcascade.store import cascades as cascade_rows
from stackcascade.store import orgs as org_rows

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection

    from stackcascade.store.db import Database

log = logging.getLogger("stackcascade.services")


@dataclass(frozen=True, slots=True)
class OrgGraph:
    """An org's active deployment edges at one ``version``: indexed, with the stacks' ids and the edges' JSON."""

    version: int
    index: EdgeIndex
    stack_ids: Mapping[str, str]  # "project/stack" -> id, for every stack at an end of an edge
    names: Mapping[str, str]  # the other way round
    group_json: Mapping[str, str]  # each upstream's outgoing edges (``index.outgoing``) as ``edges_json``
    name_json: Mapping[str, str]  # each stack of ``stack_ids`` as a JSON string

    @property
    def edge_count(self) -> int:
        return sum(map(len, self.index.outgoing.values()))

    def plan_json(self, plan: Plan) -> str:
        """``plan_documents.plan_json(plan, ...)`` for a plan made over this graph's index, from text written once.

        Its edges are those between members, by upstream in name order, each upstream's in index order
        (``domain.cascade.plan_indexed``): nearly always whole groups, copied as written when the graph was
        read. A plan from anywhere else (its edges do not add up) is written the ordinary way.
        """
        inside = set(plan.members)
        ordered = [stack for stack in sorted(inside) if stack in self.index.outgoing]
        outgoing, successors, written = self.index.outgoing, self.index.successors, self.group_json
        if inside.issuperset(chain.from_iterable(map(successors.__getitem__, ordered))):  # all whole: usual
            parts = list(map(written.__getitem__, ordered))
            count = sum(map(len, map(outgoing.__getitem__, ordered)))
        else:
            kept = [edge for stack in ordered for edge in outgoing[stack] if edge.downstream in inside]
            parts, count = list(map(edge_json, kept)), len(kept)
        names = self.name_json.get
        members = list(map(names, plan.members))
        if count != len(plan.edges) or None in members:
            return plan_json(plan, plan.operation.value)
        waves = ",".join("[" + ",".join(map(self.name_json.__getitem__, wave)) + "]" for wave in plan.waves)
        return (
            f'{{"root":{self.name_json[plan.root]},"operation":{to_json(plan.operation.value)},'
            f'"members":[{",".join(cast("list[str]", members))}],"waves":[{waves}],"edges":[{",".join(parts)}]}}'
        )


def _build(version: int, specs: list[Any]) -> OrgGraph:
    index = index_edges(edges_of(specs))
    stack_ids = stack_ids_of(specs)
    written = {upstream: edges_json(group) for upstream, group in index.outgoing.items()}
    name_json = {name: json_string(name) for name in stack_ids}
    return OrgGraph(version, index, stack_ids, {v: k for k, v in stack_ids.items()}, written, name_json)


def _caught_up(graph: OrgGraph, version: int, changed: set[str], specs: list[Any]) -> OrgGraph:
    """``graph`` with the outgoing edges of the ``changed`` stacks (ids) replaced by those in ``specs``."""
    new_ids = stack_ids_of(specs)
    stack_ids = {**graph.stack_ids, **new_ids}
    names = {**graph.names, **{v: k for k, v in new_ids.items()}}
    replaced: dict[str, list[Edge]] = {names[stack_id]: [] for stack_id in changed if stack_id in names}
    for edge in edges_of(specs):
        replaced[edge.upstream].append(edge)
    index = reindex(graph.index, replaced)
    written = dict(graph.group_json)
    for upstream in replaced:
        if upstream in index.outgoing:
            written[upstream] = edges_json(index.outgoing[upstream])
        else:
            written.pop(upstream, None)
    name_json = {**graph.name_json, **{name: json_string(name) for name in new_ids}}
    return OrgGraph(version, index, stack_ids, names, written, name_json)


def stack_ids_of(specs: list[Any]) -> dict[str, str]:
    """ "project/stack" -> id for both ends of every edge spec."""
    return {s.upstream: s.upstream_id for s in specs} | {s.downstream: s.downstream_id for s in specs}


def edges_of(specs: list[Any]) -> list[Edge]:
    """The planner's edges from ``store.cascades.edge_specs`` rows, their filter and group tuples shared
    (most edges of an org listen to the same events)."""
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
                _TRIGGERS[spec.trigger_on],
                bool(spec.require_approval),
            )
        )
    return edges


# A dict lookup is several times faster than TriggerOn(...).
_TRIGGERS = {trigger.value: trigger for trigger in TriggerOn}


class OrgGraphs:
    """The newest ``OrgGraph`` of recently planned orgs, up to ``max_edges`` edges in all, least recently
    used out first.

    Whether a held graph is current is one query: the org's logged changes since its version. Every
    committed change has its row, and pruning keeps the newest rows, so no row means no change.
    ``full_reads`` and ``catch_ups`` count how each stale or missing graph was brought up to date.
    """

    # Up to as many changes as the log keeps: re-reading a few hundred stacks' edges still costs far less
    # than reading a large graph whole, and a small graph is read whole quickly either way.
    MAX_CATCH_UP = org_rows.KEPT_CHANGES

    def __init__(self, max_edges: int = 100_000) -> None:
        # About 1 KB of memory per edge (the index, the written JSON): 30,000 edges take about 30 MB.
        self._max_edges = max_edges
        self._graphs: OrderedDict[str, OrgGraph] = OrderedDict()
        self._refreshing: set[asyncio.Task[None]] = set()
        self.full_reads = 0
        self.catch_ups = 0

    async def current(self, conn: AsyncConnection, org: str) -> OrgGraph:
        """The org's graph as ``conn`` sees it now: from memory, caught up from the log, or read whole."""
        graph = await self._refresh(conn, org, read_whole=True)
        assert graph is not None
        return graph

    async def cached(self, conn: AsyncConnection, org: str) -> OrgGraph | None:
        """The org's graph if this process holds it at the current version; never reads any edge."""
        held = self._graphs.get(org)
        if held is None or await org_rows.graph_changes_since(conn, org, held.version):
            return None
        self._graphs.move_to_end(org)
        return held

    def after_commit(self, db: Database, orgs: frozenset[str]) -> None:
        """This process committed changes to these orgs' graphs: bring the ones it holds up to date, soon.

        In the background, after the change's own response: the first plan after an edit then finds its
        graph current (or catches up itself if it comes first). Only from the log: a change it cannot replay
        (pruned from the log) drops the graph, to be read whole by the next plan that needs it.
        """
        held = sorted(orgs & self._graphs.keys())
        if held:
            task = asyncio.get_running_loop().create_task(self._refresh_after_commit(db, held))
            self._refreshing.add(task)
            task.add_done_callback(self._refreshing.discard)

    async def settle(self) -> None:
        """Wait for the refreshes ``after_commit`` started (before shutting down, and in tests)."""
        while self._refreshing:
            await asyncio.gather(*self._refreshing)

    async def _refresh_after_commit(self, db: Database, orgs: list[str]) -> None:
        for org in orgs:
            try:
                async with db.read() as conn:
                    if await self._refresh(conn, org, read_whole=False) is None:
                        self._graphs.pop(org, None)
            except Exception:  # the change is committed whatever happens here: the graph is read again later
                self._graphs.pop(org, None)
                log.warning("bringing the deployment graph of %s up to date failed", org, exc_info=True)

    async def _refresh(self, conn: AsyncConnection, org: str, *, read_whole: bool) -> OrgGraph | None:
        held = self._graphs.get(org)
        graph = None
        if held is not None:
            logged = await org_rows.graph_changes_since(conn, org, held.version)
            if not logged:
                self._graphs.move_to_end(org)
                return held
            graph = await self._caught_up_from(conn, org, held, logged)
        if graph is None:
            if not read_whole:
                return None
            # The version is read first: a change committed after it makes the graph built here newer than
            # its version says, never older, and the next read catches up from that version again.
            version = await org_rows.graph_version(conn, org)
            self.full_reads += 1
            graph = _build(version, await cascade_rows.edge_specs(conn, org))
        latest = self._graphs.get(org)
        if latest is None or latest.version <= graph.version:  # a slower concurrent refresh never goes back
            self._graphs[org] = graph
        self._graphs.move_to_end(org)
        while len(self._graphs) > 1 and sum(g.edge_count for g in self._graphs.values()) > self._max_edges:
            self._graphs.popitem(last=False)  # the least recently used; the graph just used always stays
        return graph

    async def _caught_up_from(
        self, conn: AsyncConnection, org: str, held: OrgGraph, logged: list[tuple[int, str | None]]
    ) -> OrgGraph | None:
        """``held`` brought up to date from the changes logged since, or None when they cannot tell how."""
        versions = [version for version, _ in logged]
        if versions != list(range(held.version + 1, held.version + 1 + len(logged))):
            return None  # older changes were pruned from the log: read everything
        if len(logged) > self.MAX_CATCH_UP or any(stack_id is None for _, stack_id in logged):
            return None  # a change the log could not name: read everything
        changed = {stack_id for _, stack_id in logged if stack_id is not None}
        self.catch_ups += 1
        specs = await cascade_rows.edge_specs_from(conn, org, changed)
        return _caught_up(held, versions[-1], changed, specs)
