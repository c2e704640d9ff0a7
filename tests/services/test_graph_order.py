"""The stacks' topological order as edges come and go through the services, on both databases."""

from __future__ import annotations

import random
import re

import pytest
import sqlalchemy as sa

from stackcascade.domain.errors import Conflict
from stackcascade.domain.graph import cycle_with, format_cycle
from stackcascade.services import autodeploy, webhooks
from stackcascade.services.context import Context
from stackcascade.services.webhooks import Scope
from stackcascade.store import graph_order as order_rows
from stackcascade.store.schema import stacks
from tests.services.helpers import ADMIN, make_stack

ORG = "ordered"


async def edge(ctx: Context, upstream: str, downstream: str, *, name: str | None = None) -> None:
    body = {"format": "pulumi_deployments", "payloadUrl": f"{downstream}/prod"}
    if name:
        body["name"] = name
    await webhooks.create(ctx, ADMIN, Scope(ORG, upstream, "prod"), body)


async def order_by_stack(ctx: Context) -> tuple[dict[str, int | None], list[tuple[str, str]]]:
    """Each stack's number by project name, and the active edges by project names."""
    async with ctx.db.read() as conn:
        rows = (await conn.execute(sa.select(stacks.c.id, stacks.c.project).where(stacks.c.org == ORG))).all()
        names = {str(row.id): str(row.project) for row in rows}
        numbers = await order_rows.orders(conn, list(names))
        _, edges = await order_rows.org_graph(conn, ORG)
    return {names[i]: n for i, n in numbers.items()}, [(names[u], names[d]) for u, d in edges]


def assert_topological(numbers: dict[str, int | None], edges: list[tuple[str, str]]) -> None:
    for upstream, downstream in edges:
        assert numbers[upstream] is not None and numbers[downstream] is not None
        assert numbers[upstream] < numbers[downstream], f"{upstream} -> {downstream} goes up the order"  # type: ignore[operator]


async def test_random_edges_are_refused_exactly_when_they_close_a_cycle(ctx: Context) -> None:
    projects = [f"p{i}" for i in range(9)]
    for project in projects:
        await make_stack(ctx, ORG, project)
    rng = random.Random(20261123)
    accepted: list[tuple[str, str]] = []
    searched = 0
    for _ in range(45):
        upstream, downstream = rng.sample(projects, 2)
        if (upstream, downstream) in accepted:
            continue
        named = [(f"{u}/prod", f"{d}/prod") for u, d in accepted]
        cycle = cycle_with(named, [(f"{upstream}/prod", f"{downstream}/prod")])
        numbers, _ = await order_by_stack(ctx)
        searched += numbers[upstream] > numbers[downstream]  # type: ignore[operator]
        if cycle is not None:  # refused, naming the cycle the whole graph would show
            with pytest.raises(Conflict, match=re.escape(f"{ORG}: {format_cycle(cycle)}") + "$"):
                await edge(ctx, upstream, downstream)
        else:
            await edge(ctx, upstream, downstream)
            accepted.append((upstream, downstream))
        numbers, edges = await order_by_stack(ctx)
        assert sorted(edges) == sorted(accepted)
        assert_topological(numbers, edges)
    assert searched > 3 and len(accepted) > 10  # the sequence exercised reordering, not only easy edges


async def test_an_org_without_numbers_is_numbered_at_its_first_edge_change(ctx: Context) -> None:
    for project in ("a", "b", "c"):
        await make_stack(ctx, ORG, project)
    await edge(ctx, "c", "b")
    await edge(ctx, "b", "a")
    async with ctx.db.write() as conn:  # as a database from before migration 0006 would be
        await conn.execute(stacks.update().where(stacks.c.org == ORG).values(graph_order=None))
    with pytest.raises(Conflict, match="cycle"):
        await edge(ctx, "a", "c")
    await make_stack(ctx, ORG, "d")  # created while the org has no numbers: none either
    numbers, _ = await order_by_stack(ctx)
    assert numbers["d"] is None
    await edge(ctx, "a", "d")
    numbers, edges = await order_by_stack(ctx)
    assert None not in numbers.values()
    assert_topological(numbers, edges)


async def test_a_new_stack_is_numbered_after_every_other(ctx: Context) -> None:
    for project in ("a", "b"):
        await make_stack(ctx, ORG, project)
    await edge(ctx, "b", "a")
    await make_stack(ctx, ORG, "c")
    numbers, _ = await order_by_stack(ctx)
    assert numbers["c"] == max(n for n in numbers.values() if n is not None)
    assert len(set(numbers.values())) == 3


async def test_retargeting_and_reactivating_keep_the_order(ctx: Context) -> None:
    for project in ("a", "b", "c"):
        await make_stack(ctx, ORG, project)
    await edge(ctx, "a", "b", name="hop")
    await edge(ctx, "c", "a")
    scope = Scope(ORG, "a", "prod")
    with pytest.raises(Conflict, match="cycle"):
        await webhooks.update(ctx, ADMIN, scope, "hop", {"payloadUrl": "c/prod"})
    await webhooks.update(ctx, ADMIN, scope, "hop", {"active": False})
    await edge(ctx, "b", "c")
    with pytest.raises(Conflict, match="cycle"):
        await webhooks.update(ctx, ADMIN, scope, "hop", {"active": True})
    numbers, edges = await order_by_stack(ctx)
    assert sorted(edges) == [("b", "c"), ("c", "a")]
    assert_topological(numbers, edges)


async def test_an_auto_deploy_declaration_leaves_a_topological_order(ctx: Context) -> None:
    for project in ("app", "db", "net"):
        await make_stack(ctx, ORG, project)
    document = {
        "stacks": [
            {"project": "net", "stack": "prod", "downstreamRefs": ["db/prod"]},
            {"project": "db", "stack": "prod", "downstreamRefs": ["app/prod"]},
        ]
    }
    await autodeploy.apply(ctx, ADMIN, ORG, document, dry_run=False)
    numbers, edges = await order_by_stack(ctx)
    assert sorted(edges) == [("db", "app"), ("net", "db")]
    assert_topological(numbers, edges)
    with pytest.raises(Conflict, match="cycle"):
        await edge(ctx, "app", "net")
