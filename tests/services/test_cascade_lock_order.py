"""A stack's deletion against a cancel or a retry in the same cascade, or against the claim of its
deployments, interleaved on PostgreSQL: every path takes the cascade's lock before the rows of its
deployments and members, so none deadlocks, and no running deployment is deleted with its stack.

Each test holds the first transaction open at its most exposed point, lets the deletion run until it
waits for a lock (read from ``pg_stat_activity``, no sleeping), then lets the first one finish. With the
locks taken in the other order, PostgreSQL detects a deadlock and one of the two fails.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stackcascade.domain.deployments import Status
from stackcascade.domain.errors import Conflict, NotFound
from stackcascade.services import cascades, deployments, queue, stacks
from stackcascade.services.context import Context
from stackcascade.store import cascades as cascade_rows
from stackcascade.store import deployments as deployment_rows
from stackcascade.store import stacks as stack_rows
from tests.services.helpers import ADMIN
from tests.services.test_cascade_cancel import branches, member_deployment, state
from tests.services.test_cascade_retry import ALICE, ORG, run_next
from tests.services.test_queue import _until_waiting_for_a_lock


@pytest.fixture(autouse=True)
def _postgres_only(ctx: Context) -> None:
    if not ctx.db.is_postgres:
        pytest.skip("SQLite has one writer at a time: two transactions never hold locks together")


_original_lock_live = deployment_rows.lock_live
_original_cascade_lock = cascade_rows.lock


def _pausing(original: Any, held: asyncio.Event, go: asyncio.Event, *, after: bool = False) -> Any:
    async def paused(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs) if after else None
        held.set()
        await go.wait()
        return result if after else await original(*args, **kwargs)

    return paused


async def test_deleting_a_stack_while_its_queued_member_is_being_cancelled(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = await branches(ctx)
    await run_next(ctx, "network")  # database and cluster are queued
    deployment = await member_deployment(ctx, root.cascade_id, "database")
    held, go = asyncio.Event(), asyncio.Event()
    monkeypatch.setattr(cascades, "cancelled_in", _pausing(cascades.cancelled_in, held, go))
    cancel = asyncio.create_task(deployments.cancel(ctx, ALICE, ORG, "database", "prod", deployment))
    await held.wait()  # the cancel has skipped the deployment: its row is locked
    delete = asyncio.create_task(stacks.delete(ctx, ADMIN, ORG, "database", "prod"))
    await _until_waiting_for_a_lock(ctx, delete)
    go.set()
    await asyncio.gather(cancel, delete)  # neither fails
    _, members = await state(ctx, root.cascade_id)
    assert members["database"] == ("failed", f"cancelled by {ALICE.name}")  # the cancel came first
    assert members["app"] == ("skipped", "upstream database/prod failed")


async def test_deleting_a_stack_while_its_member_is_being_retried(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = await branches(ctx)
    await run_next(ctx, "network")
    await run_next(ctx, "cluster")
    await run_next(ctx, "database", Status.FAILED)  # the cascade has finished, failed
    held, go = asyncio.Event(), asyncio.Event()
    monkeypatch.setattr(cascades, "queue_all_in", _pausing(cascades.queue_all_in, held, go, after=True))
    retry = asyncio.create_task(cascades.retry(ctx, ALICE, ORG, root.cascade_id, "database/prod"))
    await held.wait()  # the retry's deployment is inserted: its stack's row is key-share locked
    delete = asyncio.create_task(stacks.delete(ctx, ADMIN, ORG, "database", "prod"))
    await _until_waiting_for_a_lock(ctx, delete)
    go.set()
    await asyncio.gather(retry, delete)  # neither fails
    status, members = await state(ctx, root.cascade_id)
    assert members["database"] == ("skipped", "the stack was deleted")
    assert status != "running" and members["app"][0] == "skipped"


# -- a stack's deletion against the claim of its deployments -------------------------------------------------


async def test_a_claim_during_a_stacks_deletion_never_takes_its_queued_deployment(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = await branches(ctx)
    await run_next(ctx, "network")  # database and cluster are queued
    database = await member_deployment(ctx, root.cascade_id, "database")
    held, go = asyncio.Event(), asyncio.Event()
    monkeypatch.setattr(deployment_rows, "lock_live", _pausing(deployment_rows.lock_live, held, go, after=True))
    delete = asyncio.create_task(stacks.delete(ctx, ADMIN, ORG, "database", "prod"))
    await held.wait()  # the deletion has looked: nothing of database's runs, its queued deployment is locked
    monkeypatch.setattr(deployment_rows, "lock_live", _original_lock_live)
    claimed = await queue.claim(ctx, "r1")
    assert claimed is not None and claimed.id == await member_deployment(ctx, root.cascade_id, "cluster")
    assert await queue.claim(ctx, "r2") is None  # database's is locked: skipped, not waited for
    go.set()
    await delete
    _, members = await state(ctx, root.cascade_id)
    assert members["database"] == ("skipped", "the stack was deleted")
    async with ctx.db.read() as conn:
        assert await deployment_rows.get(conn, database) is None


async def test_a_deletion_refuses_when_a_cascade_queued_and_started_a_deployment_while_it_waited(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = await branches(ctx)
    network = await queue.claim(ctx, "r1")
    assert network is not None and network.id == root.id
    await queue.start(ctx, network.id, "r1")
    held, go = asyncio.Event(), asyncio.Event()
    monkeypatch.setattr(deployment_rows, "lock_live", _pausing(deployment_rows.lock_live, held, go, after=True))
    delete = asyncio.create_task(stacks.delete(ctx, ADMIN, ORG, "database", "prod"))
    await held.wait()  # the deletion has looked: database has no deployment yet
    monkeypatch.setattr(deployment_rows, "lock_live", _original_lock_live)
    await queue.finish(ctx, network.id, "r1", Status.SUCCEEDED)  # the cascade queues database and cluster
    database = await member_deployment(ctx, root.cascade_id, "database")
    while (claimed := await queue.claim(ctx, "r2")) is not None and claimed.id != database:
        pass
    assert claimed is not None
    await queue.start(ctx, database, "r2")  # database's deployment runs
    go.set()
    with pytest.raises(Conflict, match="has a deployment running"):
        await delete
    _, members = await state(ctx, root.cascade_id)
    assert members["database"] == ("queued", None)  # nothing of the deletion was written
    async with ctx.db.read() as conn:
        row = await deployment_rows.get(conn, database)
    assert row is not None and row.status == "running"


async def test_a_deployment_asked_for_while_its_stack_is_deleted_is_not_found(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    await branches(ctx)
    held, go = asyncio.Event(), asyncio.Event()
    monkeypatch.setattr(stack_rows, "delete", _pausing(stack_rows.delete, held, go, after=True))
    delete = asyncio.create_task(stacks.delete(ctx, ADMIN, ORG, "cluster", "prod"))
    await held.wait()  # the stack's row is deleted, not yet committed
    create = asyncio.create_task(deployments.create(ctx, ADMIN, ORG, "cluster", "prod", {"operation": "update"}))
    await _until_waiting_for_a_lock(ctx, create)  # it read the stack, and waits for its row to take a version
    go.set()
    await delete
    with pytest.raises(NotFound, match="cluster/prod not found"):
        await create


async def test_a_cancel_that_loses_the_race_to_a_claim_asks_the_runner_to_stop(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = await branches(ctx)
    await run_next(ctx, "network")  # database and cluster are queued
    database = await member_deployment(ctx, root.cascade_id, "database")
    held, go = asyncio.Event(), asyncio.Event()
    monkeypatch.setattr(cascade_rows, "lock", _pausing(cascade_rows.lock, held, go))
    cancel = asyncio.create_task(deployments.cancel(ctx, ALICE, ORG, "database", "prod", database))
    await held.wait()  # the cancel has read the deployment: queued
    monkeypatch.setattr(cascade_rows, "lock", _original_cascade_lock)
    claims = {runner: await queue.claim(ctx, runner) for runner in ("r1", "r2")}
    [runner] = [runner for runner, row in claims.items() if row is not None and row.id == database]  # it won
    go.set()
    cancelled = await cancel
    assert cancelled.status == "accepted" and cancelled.cancel_requested
    assert (await queue.heartbeat(ctx, database, runner)).cancel_requested  # the runner is told to stop it
