"""Impact plans over each org's cached, indexed graph: every change shows at the next read, on both databases."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from stackcascade.domain import cascade as planner
from stackcascade.domain.cascade import Edge, Plan, TriggerOn
from stackcascade.domain.deployments import Operation
from stackcascade.domain.errors import Conflict, NotFound
from stackcascade.services import autodeploy, cascades, stacks, webhooks
from stackcascade.services.context import Context
from stackcascade.services.org_graphs import OrgGraphs, _build, edges_of
from stackcascade.services.plan_documents import plan_document, to_json
from stackcascade.services.webhooks import Scope
from stackcascade.store import cascades as cascade_rows
from stackcascade.store import orgs as org_rows
from stackcascade.store.db import Database
from stackcascade.store.schema import graph_changes
from stackcascade.store.schema import stacks as stack_table
from tests.services.helpers import ADMIN, make_stack, queue

ORG = "graphs"


@pytest.fixture
async def other(ctx: Context, database_url: str) -> AsyncIterator[Context]:
    """Another replica: its own process state (graphs) on the same database."""
    replica = Context(db=Database(database_url), secrets=ctx.secrets)
    try:
        yield replica
    finally:
        await replica.graphs.settle()
        await replica.db.dispose()


async def edge(ctx: Context, upstream: str, downstream: str, **fields: Any) -> None:
    body = {"format": "pulumi_deployments", "payloadUrl": f"{downstream}/prod", "name": f"to-{downstream}", **fields}
    await webhooks.create(ctx, ADMIN, Scope(ORG, upstream, "prod"), body)
    await ctx.graphs.settle()  # the refresh after the commit runs in the background


async def change(ctx: Context, upstream: str, downstream: str, **fields: Any) -> None:
    await webhooks.update(ctx, ADMIN, Scope(ORG, upstream, "prod"), f"to-{downstream}", fields)
    await ctx.graphs.settle()


async def planned(ctx: Context, project: str) -> Plan | None:
    return (await cascades.impact_plan(ctx, ADMIN, ORG, project, "prod", "update")).plan


async def from_scratch(ctx: Context, project: str) -> Plan | None:
    """The plan over every edge read afresh: what the cached graph must answer."""
    async with ctx.db.read() as conn:
        edges = edges_of(await cascade_rows.edge_specs(conn, ORG))
    return planner.plan(f"{project}/prod", Operation.UPDATE, edges)


async def members(ctx: Context, project: str) -> set[str]:
    plan = await planned(ctx, project)
    assert plan == await from_scratch(ctx, project)
    return set(plan.members) if plan else set()


async def diamond(ctx: Context) -> None:
    for project in ("network", "database", "cluster", "app", "cache"):
        await make_stack(ctx, ORG, project)
    await edge(ctx, "network", "database")
    await edge(ctx, "network", "cluster")
    await edge(ctx, "database", "app")
    await edge(ctx, "cluster", "app")


async def held_version(ctx: Context) -> tuple[int | None, int]:
    """The version of the graph this process holds for the org, and the org's version in the database."""
    async with ctx.db.read() as conn:
        version = await org_rows.graph_version(conn, ORG)
        held = await ctx.graphs.cached(conn, ORG)
    return (held.version if held else None), version


async def test_every_edge_change_made_here_brings_the_held_graph_up_to_date_from_the_changed_stacks_edges(
    ctx: Context,
) -> None:
    await diamond(ctx)
    assert await members(ctx, "network") == {"network/prod", "database/prod", "cluster/prod", "app/prod"}
    assert (ctx.graphs.full_reads, ctx.graphs.catch_ups) == (1, 0)

    await edge(ctx, "app", "cache")
    current, version = await held_version(ctx)
    assert current == version and ctx.graphs.catch_ups == 1  # caught up when the change committed
    assert "cache/prod" in await members(ctx, "network")
    await change(ctx, "network", "cluster", filters=["preview_succeeded"])  # an update cannot fire it any more
    assert "cluster/prod" not in await members(ctx, "network")
    await change(ctx, "database", "app", active=False)
    await change(ctx, "cluster", "app", active=False)
    assert await members(ctx, "network") == {"network/prod", "database/prod"}
    await change(ctx, "database", "app", active=True, triggerOn="outputs-changed", requireApproval=True)
    plan = await planned(ctx, "network")
    assert plan is not None and [e.trigger_on.value for e in plan.edges if e.downstream == "app/prod"] == [
        "outputs-changed"
    ]
    await webhooks.delete(ctx, ADMIN, Scope(ORG, "app", "prod"), "to-cache")
    await ctx.graphs.settle()
    assert "cache/prod" not in await members(ctx, "network")
    assert (ctx.graphs.full_reads, ctx.graphs.catch_ups) == (1, 6)  # one catch-up per committed change


async def test_a_deleted_stack_is_caught_up_from_its_own_and_its_upstreams_logged_changes(
    ctx: Context, other: Context
) -> None:
    await diamond(ctx)
    await members(ctx, "network")
    await members(other, "network")
    await stacks.delete(ctx, ADMIN, ORG, "cluster", "prod")  # its edge to app, and network's edge to it, go
    await ctx.graphs.settle()
    current, version = await held_version(ctx)
    assert current == version  # caught up right after the commit
    assert await members(ctx, "network") == {"network/prod", "database/prod", "app/prod"}
    assert await members(other, "network") == {"network/prod", "database/prod", "app/prod"}
    assert (ctx.graphs.full_reads, ctx.graphs.catch_ups) == (1, 1)
    assert (other.graphs.full_reads, other.graphs.catch_ups) == (1, 1)
    await make_stack(ctx, ORG, "cluster")  # the same name again, a new stack: its id is the new one
    await edge(ctx, "network", "cluster")
    deployment = await queue(ctx, ORG, "network")
    _, rows = await cascades.get(ctx, ADMIN, ORG, deployment.cascade_id)
    async with ctx.db.read() as conn:
        ids = dict((await conn.execute(sa.select(stack_table.c.project, stack_table.c.id))).all())
    assert {row.stack: row.stack_id for row in rows}["cluster/prod"] == ids["cluster"]


async def test_plans_of_an_unchanged_graph_read_no_edges_even_as_stacks_come_and_deploy(ctx: Context) -> None:
    await diamond(ctx)
    await members(ctx, "network")
    await make_stack(ctx, ORG, "lonely")  # no edge: the graph did not change
    await queue(ctx, ORG, "app")
    await members(ctx, "network")
    await members(ctx, "database")
    assert (ctx.graphs.full_reads, ctx.graphs.catch_ups) == (1, 0)


async def test_a_change_made_through_another_replica_shows_in_this_ones_next_plan(ctx: Context, other: Context) -> None:
    await diamond(ctx)
    assert "cache/prod" not in await members(ctx, "network")
    await edge(other, "cluster", "cache")
    assert "cache/prod" in await members(ctx, "network")
    assert ctx.graphs.catch_ups == 1


async def test_a_graph_whose_changes_left_the_log_is_read_again(ctx: Context, other: Context) -> None:
    await diamond(ctx)
    await members(ctx, "network")
    await edge(other, "app", "cache")  # another replica: this one's graph is stale now
    await edge(other, "cluster", "cache")
    async with ctx.db.write() as conn:  # as pruning does once the changes are old (never the newest)
        newest = sa.select(sa.func.max(graph_changes.c.version)).scalar_subquery()
        await conn.execute(sa.delete(graph_changes).where(graph_changes.c.version < newest))
    assert "cache/prod" in await members(ctx, "network")
    assert (ctx.graphs.full_reads, ctx.graphs.catch_ups) == (2, 0)


async def test_the_log_keeps_the_newest_changes_and_prunes_the_rest(ctx: Context) -> None:
    await make_stack(ctx, ORG, "network")
    async with ctx.db.write() as conn:
        for _ in range(600):
            await org_rows.graph_changed(conn, ORG, None)
        assert await org_rows.graph_version(conn, ORG) == 600
        logged = await org_rows.graph_changes_since(conn, ORG, 0)
    # pruned every 100 changes down to the newest KEPT_CHANGES: after 600, exactly those are left
    assert [version for version, _ in logged] == list(range(600 - org_rows.KEPT_CHANGES + 1, 601))


async def test_a_deployment_in_an_org_with_a_current_graph_plans_its_cascade_without_reading_edges(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    await diamond(ctx)
    expected = await planned(ctx, "network")

    async def no_reads(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the cascade was planned from the edges, not from the org's current graph")

    monkeypatch.setattr(cascade_rows, "edge_specs", no_reads)
    deployment = await queue(ctx, ORG, "network")
    cascade, rows = await cascades.get(ctx, ADMIN, ORG, deployment.cascade_id)
    assert cascade.plan == plan_document(expected, "update") | {"rootEvents": []}
    async with ctx.db.read() as conn:
        ids = dict((await conn.execute(sa.select(stack_table.c.project, stack_table.c.id))).all())
    assert {row.stack: row.stack_id for row in rows} == {
        f"{p}/prod": ids[p] for p in ("network", "database", "cluster", "app")
    }


async def test_a_deployment_after_another_replicas_change_plans_from_the_edges_its_root_reaches(
    ctx: Context, other: Context
) -> None:
    await diamond(ctx)
    await planned(ctx, "network")
    await edge(other, "app", "cache")  # this replica's graph is stale; the deployment does not refresh it
    deployment = await queue(ctx, ORG, "network")
    _, rows = await cascades.get(ctx, ADMIN, ORG, deployment.cascade_id)
    assert "cache/prod" in {row.stack for row in rows}
    assert (ctx.graphs.full_reads, ctx.graphs.catch_ups) == (1, 0)


async def test_a_failed_refresh_after_a_commit_keeps_the_change_and_drops_the_graph(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    await diamond(ctx)
    await members(ctx, "network")

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("the database went away for a moment")

    monkeypatch.setattr(cascade_rows, "edge_specs_from", broken)
    await edge(ctx, "app", "cache")  # committed: the refresh failing afterwards must not undo or fail it
    held, _ = await held_version(ctx)
    assert held is None
    monkeypatch.undo()
    assert "cache/prod" in await members(ctx, "network")
    assert ctx.graphs.full_reads == 2


async def test_the_plan_text_is_the_plan_document_for_the_graphs_plans_and_any_other(ctx: Context) -> None:
    await diamond(ctx)
    await edge(ctx, "app", "cache", triggerOn="outputs-changed", requireApproval=True, filters=["update_succeeded"])
    await make_stack(ctx, ORG, "preview")
    await edge(ctx, "network", "preview", filters=["preview_succeeded"])  # network's edges: not all inside
    impact = await cascades.impact_plan(ctx, ADMIN, ORG, "network", "prod", "update")
    assert impact.plan is not None and "preview/prod" not in impact.plan.members
    assert impact.json() == to_json(plan_document(impact.plan, "update"))
    foreign = planner.plan("x/prod", Operation.UPDATE, [Edge("x/prod", "y/prod"), Edge("y/prod", "app/prod")])
    assert foreign is not None  # not planned over the graph: its edges do not add up there
    assert impact.graph.plan_json(foreign) == to_json(plan_document(foreign, "update"))


def spec(upstream: str, downstream: str, filters: tuple[str, ...], groups: tuple[str, ...], trigger: TriggerOn) -> Any:
    """A row as ``store.cascades.edge_specs`` returns it."""
    return SimpleNamespace(
        upstream=upstream,
        downstream=downstream,
        upstream_id=f"id-{upstream}",
        downstream_id=f"id-{downstream}",
        filters=list(filters),
        groups=list(groups),
        trigger_on=trigger.value,
        require_approval=len(filters) == 1,
    )


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 11),
            st.integers(1, 8),
            st.sampled_from(
                [(), ("update_succeeded",), ("preview_succeeded",), ("deployment_failed", "update_failed")]
            ),
            st.sampled_from([(), ("stack",)]),
            st.sampled_from(TriggerOn),
        ),
        max_size=40,
    ),
    st.sampled_from(Operation),
)
def test_a_plan_written_from_the_graphs_text_equals_its_document(
    drawn: list[tuple[int, int, tuple[str, ...], tuple[str, ...], TriggerOn]], operation: Operation
) -> None:
    specs = [spec(f"p{a}/prod", f"p{a + step}/prod", f, g, t) for a, step, f, g, t in drawn]  # only down: no cycle
    graph = _build(1, specs)
    for root in sorted(graph.stack_ids):
        plan = planner.plan_indexed(root, operation, graph.index)
        if plan is not None:
            assert graph.plan_json(plan) == to_json(plan_document(plan, operation.value))


async def test_an_auto_deploy_declaration_shows_in_the_next_plan(ctx: Context) -> None:
    await diamond(ctx)
    await members(ctx, "network")
    declaration = {
        "stacks": [
            {"project": "app", "stack": "prod", "downstreamRefs": ["cache/prod"]},
            {"project": "cache", "stack": "prod", "downstreamRefs": []},
        ]
    }
    assert (await autodeploy.apply(ctx, ADMIN, ORG, declaration, dry_run=False))[0]["applied"] is True
    await ctx.graphs.settle()
    assert ctx.graphs.full_reads == 1  # the declaration's changes were caught up from the log
    assert "cache/prod" in await members(ctx, "network")
    await autodeploy.apply(ctx, ADMIN, ORG, {"stacks": []}, dry_run=False)  # deletes the managed edge again
    assert "cache/prod" not in await members(ctx, "network")


async def test_graphs_past_the_edge_budget_leave_memory_least_recently_used_first(ctx: Context) -> None:
    await diamond(ctx)  # four edges
    for project in ("a", "b", "c"):
        await stacks.create(ctx, ADMIN, "other", project, {"stackName": "prod"})
    for upstream, downstream in (("a", "b"), ("b", "c")):
        body = {"format": "pulumi_deployments", "payloadUrl": f"{downstream}/prod"}
        await webhooks.create(ctx, ADMIN, Scope("other", upstream, "prod"), body)
    graphs = OrgGraphs(max_edges=5)
    async with ctx.db.read() as conn:
        await graphs.current(conn, ORG)
        await graphs.current(conn, "other")  # 4 + 2 edges: the diamond goes
        assert await graphs.cached(conn, ORG) is None
        assert await graphs.cached(conn, "other") is not None
        await graphs.current(conn, ORG)  # read again; now "other" is the least recently used
        assert await graphs.cached(conn, "other") is None
    assert graphs.full_reads == 3


async def test_plans_on_two_replicas_end_exact_after_writers_and_readers_race(ctx: Context, other: Context) -> None:
    """Stress: edges created, changed and deleted through both replicas while both plan; nothing is lost."""
    projects = [f"p{i:02d}" for i in range(12)]
    for project in projects:
        await make_stack(ctx, ORG, project)
    await edge(ctx, "p00", "p01")

    async def write(replica: Context, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(15):
            up, down = sorted(rng.sample(range(12), 2))  # downwards only: no cycle is ever refused
            scope, name = Scope(ORG, projects[up], "prod"), f"to-{projects[down]}"
            try:
                match rng.choice(["create", "create", "change", "delete"]):
                    case "create":
                        body = {"format": "pulumi_deployments", "payloadUrl": f"{projects[down]}/prod", "name": name}
                        await webhooks.create(replica, ADMIN, scope, body)
                    case "change":
                        await webhooks.update(replica, ADMIN, scope, name, {"active": rng.random() < 0.5})
                    case _:
                        await webhooks.delete(replica, ADMIN, scope, name)
            except (Conflict, NotFound):
                pass  # another writer got there first, or there is no such edge yet

    async def read(replica: Context, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(20):
            await cascades.impact_plan(replica, ADMIN, ORG, rng.choice(projects), "prod", "update")

    await members(ctx, "p00")
    await members(other, "p00")  # both replicas hold the graph when the race starts
    await asyncio.gather(
        *(write(replica, seed) for seed, replica in enumerate([ctx, other, ctx, other])),
        *(read(replica, 100 + seed) for seed, replica in enumerate([ctx, other, ctx, other, ctx])),
    )
    await ctx.graphs.settle()
    await other.graphs.settle()
    for project in projects:
        expected = await from_scratch(ctx, project)
        assert await planned(ctx, project) == expected
        assert await planned(other, project) == expected
    assert ctx.graphs.catch_ups > 0 and other.graphs.catch_ups > 0  # the race went through the log
