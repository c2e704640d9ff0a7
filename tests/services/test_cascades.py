"""Cascades through the services, deterministic: the diamond coalesced and per-edge, failure, retry, approval."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from stackcascade.domain.deployments import Status
from stackcascade.domain.errors import Conflict
from stackcascade.domain.roles import Principal, TokenKind
from stackcascade.services import (
    cascades,
    deployment_settings,
    deployments,
    external_events,
    org_settings,
    queue,
    runs,
    stacks,
    webhooks,
)
from stackcascade.services.context import Context
from stackcascade.services.webhooks import Scope
from stackcascade.store.schema import cascades as cascades_table
from stackcascade.store.schema import deployments as deployments_table
from stackcascade.webhooks.dispatcher import Dispatcher
from tests.services.helpers import ADMIN, make_stack
from tests.services.test_cascade_races import graph as stacks_and_edges

ORG = "acme"
DIAMOND = [("network", "database"), ("network", "cluster"), ("database", "app"), ("cluster", "app")]


async def diamond(ctx: Context, **edge_options: Any) -> None:
    for project in ("network", "database", "cluster", "app"):
        await make_stack(ctx, ORG, project)
        settings = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere", "branch": "main"}}}
        await deployment_settings.save(ctx, ADMIN, ORG, project, "prod", settings, replace=True)
    for up, down in DIAMOND:
        body = {"format": "pulumi_deployments", "payloadUrl": f"{down}/prod", "filters": ["update_succeeded"]}
        await webhooks.create(ctx, ADMIN, Scope(ORG, up, "prod"), body | edge_options.get(f"{up}->{down}", {}))


async def deploy(ctx: Context, project: str, operation: str = "update") -> Any:
    return await deployments.create(ctx, ADMIN, ORG, project, "prod", {"operation": operation})


async def run_next(ctx: Context, expect: str, status: Status = Status.SUCCEEDED) -> Any:
    """Claim the head-of-line deployment, which must be ``expect``'s, and finish it."""
    row = await queue.claim(ctx, "r1")
    assert row is not None, f"nothing to run, expected {expect}"
    assert row.project == expect
    await queue.start(ctx, row.id, "r1")
    return await queue.finish(ctx, row.id, "r1", status)


async def members(ctx: Context, cascade_id: str) -> dict[str, tuple[str, str | None]]:
    _, rows = await cascades.get(ctx, ADMIN, ORG, cascade_id)
    return {m.stack.split("/")[0]: (m.status, m.reason) for m in rows}


async def deployed(ctx: Context) -> Counter[str]:
    async with ctx.db.read() as conn:
        query = sa.text("SELECT s.project FROM deployments d JOIN stacks s ON s.id = d.stack_id")
        return Counter(row[0] for row in (await conn.execute(query)).all())


async def nothing_queued(ctx: Context) -> bool:
    return await queue.claim(ctx, "probe") is None


async def test_the_diamond_deploys_each_dependent_once_and_app_only_after_both(ctx: Context) -> None:
    await diamond(ctx)
    root = await deploy(ctx, "network")
    assert root.cascade_id is not None
    state = await members(ctx, root.cascade_id)
    assert state == {
        "network": ("queued", None),
        "database": ("waiting", None),
        "cluster": ("waiting", None),
        "app": ("waiting", None),
    }
    await run_next(ctx, "network")
    assert (await members(ctx, root.cascade_id))["database"][0] == "queued"
    first = await run_next(ctx, "cluster")  # cluster and database are both queued; the queue is FIFO by creation
    assert first is not None
    assert (await members(ctx, root.cascade_id))["app"] == ("waiting", None)  # database has not finished yet
    await run_next(ctx, "database")
    await run_next(ctx, "app")
    assert await nothing_queued(ctx)
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert cascade.status == "succeeded"
    assert await deployed(ctx) == Counter(network=1, database=1, cluster=1, app=1)
    async with ctx.db.read() as conn:
        initiators = {
            r[0]
            for r in (
                await conn.execute(
                    sa.select(deployments_table.c.initiator).where(deployments_table.c.cascade_id == root.cascade_id)
                )
            ).all()
        }
    assert initiators == {"api", "cascade"}


async def test_switching_to_per_edge_mid_cascade_deploys_no_member_twice(ctx: Context) -> None:
    await diamond(ctx)
    dispatcher = Dispatcher(ctx, client=None)  # type: ignore[arg-type]  # no HTTP webhooks here
    root = await deploy(ctx, "network")
    await org_settings.update(
        ctx, ADMIN, ORG, {"cascadeMode": "per-edge"}
    )  # the cascade started coalesced: it goes on so
    for expect in ("network", "cluster", "database", "app"):
        await run_next(ctx, expect)
        while await dispatcher.step():
            pass
    assert await nothing_queued(ctx)
    assert await deployed(ctx) == Counter(network=1, database=1, cluster=1, app=1)
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert cascade.status == "succeeded"


async def _drain_per_edge(ctx: Context, dispatcher: Dispatcher) -> None:
    """Dispatch, then run whatever is queued, until nothing is left."""
    while True:
        while await dispatcher.step():
            pass
        row = await queue.claim(ctx, "r1")
        if row is None:
            return
        await queue.start(ctx, row.id, "r1")
        await queue.finish(ctx, row.id, "r1", Status.SUCCEEDED)


async def test_switching_to_coalesced_before_a_per_edge_deployment_finishes_still_fires_its_edges(
    ctx: Context,
) -> None:
    await diamond(ctx)
    await org_settings.update(ctx, ADMIN, ORG, {"cascadeMode": "per-edge"})
    dispatcher = Dispatcher(ctx, client=None)  # type: ignore[arg-type]  # no HTTP webhooks here
    root = await deploy(ctx, "network")
    assert root.cascade_id is None
    await org_settings.update(ctx, ADMIN, ORG, {"cascadeMode": "coalesced"})  # while network is queued
    await _drain_per_edge(ctx, dispatcher)
    # it began per edge, so it ends so: the edges it fired go on per edge, and no cascade is started
    assert await deployed(ctx) == Counter(network=1, database=1, cluster=1, app=2)
    assert await cascades.list_cascades(ctx, ADMIN, ORG) == ([], None)
    # what begins now is coalesced
    assert (await deploy(ctx, "network")).cascade_id is not None
    await _drain_per_edge(ctx, dispatcher)
    assert await deployed(ctx) == Counter(network=2, database=2, cluster=2, app=3)


async def test_an_external_event_recorded_per_edge_fires_its_edges_after_a_switch_to_coalesced(ctx: Context) -> None:
    await diamond(ctx)
    await org_settings.update(ctx, ADMIN, ORG, {"cascadeMode": "per-edge"})
    dispatcher = Dispatcher(ctx, client=None)  # type: ignore[arg-type]  # no HTTP webhooks here
    recorded = await external_events.record(ctx, ADMIN, ORG, "network", "prod", {"kind": "update_succeeded"})
    assert recorded["cascadeId"] is None
    await org_settings.update(ctx, ADMIN, ORG, {"cascadeMode": "coalesced"})  # before the dispatcher saw it
    await _drain_per_edge(ctx, dispatcher)
    assert await deployed(ctx) == Counter(database=1, cluster=1, app=2)


async def test_per_edge_mode_deploys_app_once_per_fired_edge(ctx: Context) -> None:
    await diamond(ctx)
    await org_settings.update(ctx, ADMIN, ORG, {"cascadeMode": "per-edge"})
    dispatcher = Dispatcher(ctx, client=None)  # type: ignore[arg-type]  # no HTTP webhooks here
    root = await deploy(ctx, "network")
    assert root.cascade_id is None
    await _drain_per_edge(ctx, dispatcher)
    assert await deployed(ctx) == Counter(network=1, database=1, cluster=1, app=2)


async def test_a_failed_member_skips_its_descendants_and_retry_resumes_them(ctx: Context) -> None:
    await diamond(ctx)
    root = await deploy(ctx, "network")
    await run_next(ctx, "network")
    await run_next(ctx, "cluster")  # the independent branch runs either way
    await run_next(ctx, "database", Status.FAILED)
    state = await members(ctx, root.cascade_id)
    assert state["app"] == ("skipped", "upstream database/prod failed")
    assert state["cluster"] == ("succeeded", None)
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert cascade.status == "failed"
    with pytest.raises(Conflict, match="only a failed member"):
        await cascades.retry(ctx, ADMIN, ORG, root.cascade_id, "cluster/prod")
    await cascades.retry(ctx, ADMIN, ORG, root.cascade_id, "database/prod")
    assert (await members(ctx, root.cascade_id))["app"] == ("waiting", None)
    await run_next(ctx, "database")
    await run_next(ctx, "app")
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert cascade.status == "succeeded"
    assert await deployed(ctx) == Counter(network=1, database=2, cluster=1, app=1)


async def test_a_failure_stops_every_descendant_and_retry_runs_them_in_order(ctx: Context) -> None:
    # network -> database -> migrate -> app and network -> cluster -> app: cluster fires app, but app
    # is a descendant of the failed database, so it waits for database's retry to run migrate first.
    edges = [("network", "database"), ("database", "migrate"), ("migrate", "app"), ("network", "cluster")]
    await stacks_and_edges(ctx, [*edges, ("cluster", "app")])
    root = await deploy(ctx, "network")
    await run_next(ctx, "network")
    await run_next(ctx, "cluster")
    await run_next(ctx, "database", Status.FAILED)
    state = await members(ctx, root.cascade_id)
    assert state["migrate"] == ("skipped", "upstream database/prod failed")
    assert state["app"] == ("skipped", "upstream database/prod failed")  # names the failure, two waves up
    assert await nothing_queued(ctx)
    await cascades.retry(ctx, ADMIN, ORG, root.cascade_id, "database/prod")
    state = await members(ctx, root.cascade_id)
    assert state["migrate"] == ("waiting", None) and state["app"] == ("waiting", None)
    await run_next(ctx, "database")
    await run_next(ctx, "migrate")
    await run_next(ctx, "app")
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert cascade.status == "succeeded"
    assert await deployed(ctx) == Counter(network=1, database=2, migrate=1, cluster=1, app=1)


async def test_deleting_a_stack_whose_member_is_queued_moves_its_cascade_on(ctx: Context) -> None:
    await diamond(ctx)
    root = await deploy(ctx, "network")
    await run_next(ctx, "network")  # database and cluster are queued now
    await stacks.delete(ctx, ADMIN, ORG, "database", "prod")
    state = await members(ctx, root.cascade_id)
    assert state["database"] == ("skipped", "the stack was deleted")
    await run_next(ctx, "cluster")
    await run_next(ctx, "app")  # cluster fired it; a deleted upstream stops nothing
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert cascade.status == "succeeded"
    assert await nothing_queued(ctx)


async def test_deleting_the_root_stack_while_its_deployment_is_queued_ends_the_cascade(ctx: Context) -> None:
    await diamond(ctx)
    root = await deploy(ctx, "network")
    await stacks.delete(ctx, ADMIN, ORG, "network", "prod")
    state = await members(ctx, root.cascade_id)
    assert state["network"] == ("skipped", "the stack was deleted")
    assert {state[name][0] for name in ("database", "cluster", "app")} == {"skipped"}
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert cascade.status != "running"
    assert await nothing_queued(ctx)


async def test_a_gated_member_whose_stack_was_deleted_is_skipped_not_left_awaiting_approval(ctx: Context) -> None:
    await diamond(ctx, **{"cluster->app": {"requireApproval": True}})
    root = await deploy(ctx, "network")
    await stacks.delete(ctx, ADMIN, ORG, "app", "prod")  # waiting: nothing of it runs yet
    for expect in ("network", "cluster", "database"):
        await run_next(ctx, expect)
    state = await members(ctx, root.cascade_id)
    assert state["app"] == ("skipped", "the stack was deleted")
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert cascade.status == "succeeded"


async def test_a_member_whose_deployment_vanished_with_its_stack_is_skipped_by_the_sweep(ctx: Context) -> None:
    # A root created while its stack was being deleted: the deletion could not see the new cascade, and
    # its cascading delete took the root's deployment. The sweeper's reconcile must not leave it running.
    await diamond(ctx)
    root = await deploy(ctx, "network")
    async with ctx.db.write() as conn:
        await conn.execute(sa.delete(deployments_table).where(deployments_table.c.id == root.id))
    assert await cascades.reconcile(ctx) == 1
    state = await members(ctx, root.cascade_id)
    assert state["network"] == ("skipped", "the stack was deleted")
    assert {state[name][0] for name in ("database", "cluster", "app")} == {"skipped"}
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert cascade.status != "running"


async def test_a_running_cascade_whose_members_all_ended_is_finished_by_the_sweep(ctx: Context) -> None:
    # The safety net for an advance that ended every member but missed setting the cascade's own status.
    await diamond(ctx)
    root = await deploy(ctx, "network")
    for expect in ("network", "cluster", "database", "app"):
        await run_next(ctx, expect)
    async with ctx.db.write() as conn:
        await conn.execute(
            sa.update(cascades_table).where(cascades_table.c.id == root.cascade_id).values(status="running")
        )
    assert await cascades.reconcile(ctx) == 1
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert cascade.status == "succeeded"
    assert await cascades.reconcile(ctx) == 0  # nothing left behind


NO_SOURCE = (
    "no source for stack acme/database/prod: save deployment settings with sourceContext.git.repoUrl, "
    "or give sourceContext in the request"
)


async def test_a_member_without_a_source_fails_in_its_cascade_and_the_other_branch_runs_on(ctx: Context) -> None:
    await diamond(ctx)
    await deployment_settings.delete(ctx, ADMIN, ORG, "database", "prod")
    root = await deploy(ctx, "network")
    await run_next(ctx, "network")  # its finish queues cluster and refuses database, in one transaction
    state = await members(ctx, root.cascade_id)
    assert state["database"] == ("failed", NO_SOURCE)
    assert state["cluster"] == ("queued", None)
    assert state["app"] == ("waiting", None)  # decided once every upstream is done
    await run_next(ctx, "cluster")
    assert (await members(ctx, root.cascade_id))["app"] == ("skipped", "upstream database/prod failed")
    assert await nothing_queued(ctx)
    assert await deployed(ctx) == Counter(network=1, cluster=1)
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert cascade.status == "failed"


async def test_a_refused_member_ends_its_cascade_when_nothing_else_runs(ctx: Context) -> None:
    for project in ("network", "database", "app"):
        await make_stack(ctx, ORG, project)
    for project in ("network", "app"):  # database has no deployment settings
        settings = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere", "branch": "main"}}}
        await deployment_settings.save(ctx, ADMIN, ORG, project, "prod", settings, replace=True)
    for up, down in [("network", "database"), ("database", "app")]:
        body = {"format": "pulumi_deployments", "payloadUrl": f"{down}/prod", "filters": ["update_succeeded"]}
        await webhooks.create(ctx, ADMIN, Scope(ORG, up, "prod"), body)
    root = await deploy(ctx, "network")
    await run_next(ctx, "network")
    state = await members(ctx, root.cascade_id)
    assert state == {
        "network": ("succeeded", None),
        "database": ("failed", NO_SOURCE),
        "app": ("skipped", "upstream database/prod failed"),
    }
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert cascade.status == "failed"


async def test_an_approval_gate_holds_the_member_until_approved_and_records_who(ctx: Context) -> None:
    await diamond(ctx, **{"cluster->app": {"requireApproval": True}})
    root = await deploy(ctx, "network")
    await run_next(ctx, "network")
    await run_next(ctx, "cluster")
    await run_next(ctx, "database")
    assert (await members(ctx, root.cascade_id))["app"][0] == "awaiting-approval"
    assert await nothing_queued(ctx)
    await cascades.approve(ctx, ADMIN, ORG, root.cascade_id, "app/prod")
    await run_next(ctx, "app")
    _, rows = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert {m.stack: m.approved_by for m in rows}["app/prod"] == ADMIN.name


async def test_a_rejected_member_is_skipped_with_the_reason(ctx: Context) -> None:
    await diamond(ctx, **{"database->app": {"requireApproval": True}})
    root = await deploy(ctx, "network")
    for project in ("network", "cluster", "database"):
        await run_next(ctx, project)
    await cascades.reject(ctx, ADMIN, ORG, root.cascade_id, "app/prod")
    assert (await members(ctx, root.cascade_id))["app"] == ("skipped", f"rejected by {ADMIN.name}")
    assert await nothing_queued(ctx)
    with pytest.raises(Conflict, match="awaiting approval"):
        await cascades.approve(ctx, ADMIN, ORG, root.cascade_id, "app/prod")


async def test_a_rejected_member_fires_nothing_and_the_cascade_moves_on_at_once(ctx: Context) -> None:
    await diamond(ctx, **{"network->database": {"requireApproval": True}})
    root = await deploy(ctx, "network")
    await run_next(ctx, "network")
    await run_next(ctx, "cluster")
    state = await members(ctx, root.cascade_id)
    assert state["database"][0] == "awaiting-approval" and state["app"][0] == "waiting"
    await cascades.reject(ctx, ADMIN, ORG, root.cascade_id, "database/prod")
    await run_next(ctx, "app")  # queued by the rejection itself: cluster's edge fired, so app runs, once
    state = await members(ctx, root.cascade_id)
    assert state["database"] == ("skipped", f"rejected by {ADMIN.name}")
    assert state["app"] == ("succeeded", None)
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert cascade.status == "succeeded", "a rejection is a skip, not a failure"
    assert await nothing_queued(ctx)


async def test_a_preview_starts_no_cascade_and_member_deployments_start_none(ctx: Context) -> None:
    await diamond(ctx)
    preview = await deploy(ctx, "network", "preview")
    assert preview.cascade_id is None
    await run_next(ctx, "network")
    assert await nothing_queued(ctx)


RUNNER = Principal(token_id="runner-token", name="runner", kind=TokenKind.RUNNER)


async def run_with_outputs(ctx: Context, expect: str, outputs: dict[str, Any]) -> None:
    """Through the runner protocol, so the outputs are compared the way a real run's are."""
    job = await runs.claim(ctx, RUNNER, "r1", 0)
    assert job is not None and job["project"] == expect
    await queue.start(ctx, job["deploymentId"], "runner/r1")
    await runs.finish(ctx, RUNNER, "r1", job["deploymentId"], runs.Result(Status.SUCCEEDED, outputs=outputs))


async def test_outputs_changed_edges_prune_when_outputs_stay_the_same(ctx: Context) -> None:
    await diamond(ctx, **{"network->database": {"triggerOn": "outputs-changed"}})
    first = await deploy(ctx, "network")
    await run_with_outputs(ctx, "network", {"vpc": "vpc-1"})  # new outputs: the edge fires
    assert (await members(ctx, first.cascade_id))["database"][0] == "queued"
    for project in ("cluster", "database", "app"):
        await run_with_outputs(ctx, project, {})
    second = await deploy(ctx, "network")
    await run_with_outputs(ctx, "network", {"vpc": "vpc-1"})  # the same outputs: pruned
    state = await members(ctx, second.cascade_id)
    assert state["database"] == ("skipped", "outputs of network/prod unchanged")
    await run_with_outputs(ctx, "cluster", {})
    await run_with_outputs(ctx, "app", {})  # app still runs: cluster's edge fired
    assert await deployed(ctx) == Counter(network=2, cluster=2, database=1, app=2)
