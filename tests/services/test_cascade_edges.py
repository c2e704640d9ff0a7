"""Which edges of a cascade fired, as the API and the console tell it: what the decision rule counted."""

from __future__ import annotations

from stackcascade.services import cascades, deployment_settings, deployments, webhooks
from stackcascade.services.cascade_edges import edge_states
from stackcascade.services.context import Context
from stackcascade.services.webhooks import Scope
from tests.services.helpers import ADMIN, make_stack
from tests.services.test_cascade_races import finish_next, graph
from tests.services.test_cascade_retry import ALICE, ORG, chain, run_next

Told = dict[tuple[str, str], tuple[bool | None, str | None]]


async def _told(ctx: Context, cascade_id: str) -> tuple[dict[str, str], Told]:
    cascade, rows = await cascades.get(ctx, ADMIN, ORG, cascade_id)
    members = {m.stack.split("/")[0]: m.status for m in rows}
    edges = {
        (state.edge.upstream.split("/")[0], state.edge.downstream.split("/")[0]): (state.fired, state.why)
        for state in edge_states(cascade, rows)
    }
    return members, edges


async def test_an_every_event_edge_from_a_member_cancelled_while_queued_did_not_fire(ctx: Context) -> None:
    # Such a member emitted deployment_queued, which an edge without filters listens to; but it failed,
    # and the edge does not expect a failure: the member below is skipped, so the edge did not fire.
    await chain(ctx, "network", "database", "app", filters=())
    root = await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "update"})
    await run_next(ctx, "network")
    _, rows = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    queued = next(m.deployment_id for m in rows if m.stack == "database/prod")
    await deployments.cancel(ctx, ALICE, ORG, "database", "prod", queued)
    members, edges = await _told(ctx, root.cascade_id)
    assert (members["database"], members["app"]) == ("failed", "skipped")
    assert edges == {
        ("network", "database"): (True, None),
        ("database", "app"): (False, "database/prod failed"),
    }


async def test_an_every_event_edge_from_a_superseded_member_did_not_fire(ctx: Context) -> None:
    await graph(ctx, [("network", "database")], skip_intermediate={"database"})
    await make_stack(ctx, ORG, "app")
    source = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere", "branch": "main"}}}
    await deployment_settings.save(ctx, ADMIN, ORG, "app", "prod", source, replace=True)
    every_event = {"format": "pulumi_deployments", "payloadUrl": "app/prod", "filters": []}
    await webhooks.create(ctx, ADMIN, Scope(ORG, "database", "prod"), every_event)
    first = await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "update"})
    await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "update"})
    await finish_next(ctx, "network")
    await finish_next(ctx, "network")
    await finish_next(ctx, "database")  # the second cascade's: the first one's was superseded
    await ctx.settle()
    members, edges = await _told(ctx, first.cascade_id)
    assert (members["database"], members["app"]) == ("skipped", "skipped")
    assert edges[("database", "app")] == (False, "database/prod was superseded by a newer deployment")


async def test_edges_below_a_member_still_running_are_pending(ctx: Context) -> None:
    await chain(ctx, "network", "database", "app")
    root = await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "update"})
    await run_next(ctx, "network")
    _, edges = await _told(ctx, root.cascade_id)
    assert edges == {("network", "database"): (True, None), ("database", "app"): (None, None)}
