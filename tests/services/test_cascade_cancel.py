"""Cancelling a cascade member's deployment: the cascade moves on in the same transaction, and a cancelled
member counts as not successful (its descendants are skipped naming it, the cascade does not succeed)."""

from __future__ import annotations

from typing import Any

from stackcascade.domain.deployments import Status
from stackcascade.services import cascades, deployments, queue, webhooks
from stackcascade.services.context import Context
from stackcascade.services.webhooks import Scope
from tests.services.helpers import ADMIN
from tests.services.test_cascade_retry import ALICE, ORG, chain, run_next


async def branches(ctx: Context) -> Any:
    """network -> database -> app and network -> cluster; the root deployment of network, queued."""
    await chain(ctx, "network", "database", "app")
    await chain(ctx, "cluster")
    body = {"format": "pulumi_deployments", "payloadUrl": "cluster/prod", "filters": ["deployment_succeeded"]}
    await webhooks.create(ctx, ADMIN, Scope(ORG, "network", "prod"), body)
    return await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "update"})


async def state(ctx: Context, cascade_id: str) -> tuple[str, dict[str, tuple[str, str | None]]]:
    cascade, rows = await cascades.get(ctx, ADMIN, ORG, cascade_id)
    return cascade.status, {m.stack.split("/")[0]: (m.status, m.reason) for m in rows}


async def member_deployment(ctx: Context, cascade_id: str, project: str) -> str:
    _, rows = await cascades.get(ctx, ADMIN, ORG, cascade_id)
    return next(m.deployment_id for m in rows if m.stack == f"{project}/prod")


async def cancel(ctx: Context, project: str, deployment_id: str) -> Any:
    return await deployments.cancel(ctx, ALICE, ORG, project, "prod", deployment_id)


async def test_cancelling_a_queued_member_skips_its_descendants_at_once(ctx: Context) -> None:
    root = await branches(ctx)
    await run_next(ctx, "network")  # database and cluster are queued
    cancelled = await cancel(ctx, "database", await member_deployment(ctx, root.cascade_id, "database"))
    assert (cancelled.status, cancelled.reason) == ("skipped", "cancelled by alice")  # the deployment, as before
    status, members = await state(ctx, root.cascade_id)  # no lease sweep in between
    assert members["database"] == ("failed", "cancelled by alice")
    assert members["app"] == ("skipped", "upstream database/prod failed")
    assert (status, members["cluster"][0]) == ("running", "queued")  # the independent branch carries on
    await run_next(ctx, "cluster")
    assert await queue.claim(ctx, "probe") is None
    await cascades.reconcile(ctx)  # what the server's sweeper does: nothing left to change
    status, members = await state(ctx, root.cascade_id)
    assert status == "failed"
    assert members["database"] == ("failed", "cancelled by alice")


async def test_cancelling_the_queued_root_ends_its_cascade_failed(ctx: Context) -> None:
    root = await branches(ctx)
    await cancel(ctx, "network", root.id)
    status, members = await state(ctx, root.cascade_id)
    assert status == "failed"
    assert members == {
        "network": ("failed", "cancelled by alice"),
        "cluster": ("skipped", "upstream network/prod failed"),
        "database": ("skipped", "upstream network/prod failed"),
        "app": ("skipped", "upstream network/prod failed"),
    }
    assert await queue.claim(ctx, "probe") is None
    await cascades.reconcile(ctx)
    assert (await state(ctx, root.cascade_id))[0] == "failed"


async def test_a_member_cancelled_while_queued_can_be_retried_and_resumes_its_descendants(ctx: Context) -> None:
    root = await branches(ctx)
    await run_next(ctx, "network")
    await cancel(ctx, "database", await member_deployment(ctx, root.cascade_id, "database"))
    await run_next(ctx, "cluster")
    await cascades.retry(ctx, ALICE, ORG, root.cascade_id, "database/prod")
    assert (await state(ctx, root.cascade_id))[1]["app"] == ("waiting", None)
    await run_next(ctx, "database")
    await run_next(ctx, "app")
    assert (await state(ctx, root.cascade_id))[0] == "succeeded"


async def test_cancelling_a_running_member_lets_the_runner_end_it_and_the_cascade_moves_on_then(ctx: Context) -> None:
    root = await branches(ctx)
    await run_next(ctx, "network")
    await run_next(ctx, "cluster")
    row = await queue.claim(ctx, "r1")
    assert row is not None and row.project == "database"
    await queue.start(ctx, row.id, "r1")
    asked = await cancel(ctx, "database", row.id)
    assert (asked.status, bool(asked.cancel_requested)) == ("running", True)
    assert (await state(ctx, root.cascade_id))[1]["database"] == ("queued", None)  # still running
    await queue.finish(ctx, row.id, "r1", Status.FAILED, "cancelled")  # what the runner does on a cancel
    status, members = await state(ctx, root.cascade_id)
    assert members["database"] == ("failed", "cancelled")
    assert members["app"] == ("skipped", "upstream database/prod failed")
    assert status == "failed"


async def test_a_cancel_of_a_deployment_that_is_no_longer_the_members_changes_nothing(ctx: Context) -> None:
    # The cancel's transaction found the deployment queued, but the member points elsewhere (a retry queued
    # another one) or has moved on: the member and the cascade are left as they are.
    root = await branches(ctx)
    await run_next(ctx, "network")
    current = await member_deployment(ctx, root.cascade_id, "database")
    before = await state(ctx, root.cascade_id)
    async with ctx.db.write() as conn:
        stale = await cascades.cancelled_in(conn, root.cascade_id, "database/prod", "another-id", "x", ctx.now())
    assert stale is False
    assert await state(ctx, root.cascade_id) == before
    await run_next(ctx, "cluster")
    await run_next(ctx, "database")  # the member ran: it is no longer queued
    async with ctx.db.write() as conn:
        late = await cascades.cancelled_in(conn, root.cascade_id, "database/prod", current, "x", ctx.now())
    assert late is False
    assert (await state(ctx, root.cascade_id))[1]["database"] == ("succeeded", None)
