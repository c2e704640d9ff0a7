"""A stack's deletion against a cancel or a retry in the same cascade, interleaved on PostgreSQL: every
path takes the cascade's lock before the rows of its deployments and members, so none deadlocks.

Each test holds the first transaction open at its most exposed point, lets the deletion run until it
waits for a lock (read from ``pg_stat_activity``, no sleeping), then lets the first one finish. With the
locks taken in the other order, PostgreSQL detects a deadlock and one of the two fails.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stackcascade.domain.deployments import Status
from stackcascade.services import cascades, deployments, stacks
from stackcascade.services.context import Context
from tests.services.helpers import ADMIN
from tests.services.test_cascade_cancel import branches, member_deployment, state
from tests.services.test_cascade_retry import ALICE, ORG, run_next
from tests.services.test_queue import _until_waiting_for_a_lock


@pytest.fixture(autouse=True)
def _postgres_only(ctx: Context) -> None:
    if not ctx.db.is_postgres:
        pytest.skip("SQLite has one writer at a time: two transactions never hold locks together")


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
