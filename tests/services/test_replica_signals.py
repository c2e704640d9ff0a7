"""Replicas sharing PostgreSQL wake each other's claimers with NOTIFY (``services.replica_signals``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import sqlalchemy as sa

from stackcascade.domain.roles import Principal, TokenKind
from stackcascade.services import runs
from stackcascade.services.context import Context
from stackcascade.services.replica_signals import ReplicaSignals
from stackcascade.store.db import Database
from tests.services.helpers import make_stack, queue

ORG = "replicas"
RUNNER = Principal(token_id="runner-token", name="pool", kind=TokenKind.RUNNER)


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Let the other tasks run until ``condition()`` holds, for at most ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("the replicas never got there")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def signalling(ctx: Context, senders: list[str] | None = None) -> AsyncIterator[ReplicaSignals]:
    """``ctx`` as a replica whose signals run (looking for the others every 50 ms) until the block ends;
    ``senders``: where to record the sender of every notification its listener receives."""
    signals = ReplicaSignals(ctx, look_seconds=0.05, retry_seconds=0.05)
    if senders is not None:
        hear = signals._on_notification

        def recording(sender: str) -> None:
            senders.append(sender)
            hear(sender)

        signals._on_notification = recording  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(signals.run(stop))
    try:
        await until(signals.listening.is_set)
        yield signals
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert ctx.work.broadcast is None  # detached once stopped


@pytest.fixture
async def other(ctx: Context, database_url: str) -> AsyncIterator[Context]:
    """Another replica: its own process state on the same database."""
    if not ctx.db.is_postgres:
        pytest.skip("replicas share PostgreSQL; SQLite has one server")
    replica = Context(db=Database(database_url), secrets=ctx.secrets)
    try:
        yield replica
    finally:
        await replica.db.dispose()


@asynccontextmanager
async def pair(
    ctx: Context, other: Context, senders: list[str] | None = None
) -> AsyncIterator[tuple[ReplicaSignals, ReplicaSignals]]:
    """Both replicas signalling, each knowing of the other, and the first having heard the second's hello
    (sent when it began to listen), so nothing from their start arrives later."""
    async with signalling(ctx, senders) as here, signalling(other) as there:
        await until(lambda: here.others and there.others and here.heard == 1)
        yield here, there


async def test_work_queued_on_one_replica_wakes_the_claimers_of_another_at_once(ctx: Context, other: Context) -> None:
    await make_stack(ctx, ORG, "net")
    other.claims.poll_seconds = 60  # without a notification, the claimer would ask again only in a minute
    async with pair(ctx, other) as (_, there):
        heard = there.heard
        claim = asyncio.create_task(runs.claim(other, RUNNER, "slot-0", 30))
        await until(lambda: len(other.work._waiters) == 1)  # asked once, found nothing, now waits
        deployment = await queue(ctx, ORG, "net")  # commits on this replica, then notifies
        job = await asyncio.wait_for(claim, 10)
        assert there.heard == heard + 1
    assert job is not None and job["deploymentId"] == deployment.id


async def test_a_replica_does_not_wake_its_own_claimers_twice(ctx: Context, other: Context) -> None:
    """PostgreSQL delivers a notification to its sender's session too: that one is ignored."""
    senders: list[str] = []
    async with pair(ctx, other, senders) as (here, there):
        heard, echoes, before = there.heard, senders.count(here.name), ctx.work.generation
        ctx.work.notify()
        await until(lambda: senders.count(here.name) == echoes + 1 and there.heard == heard + 1)
        assert ctx.work.generation == before + 1  # the notify itself; its echo woke no one
        assert here.heard == 1  # the other's hello only


async def test_a_replica_that_is_alone_sends_only_its_hello(ctx: Context, other: Context) -> None:
    senders: list[str] = []
    async with signalling(ctx, senders) as here:
        await until(lambda: senders == [here.name])  # its hello: alone, it still says it listens
        assert not here.others  # it looked when it started: no one else listens
        ctx.work.notify()  # nothing to send: no one would hear it
        async with signalling(other) as there:
            await until(lambda: there.name in senders and here.others)  # the other's hello says so at once
            ctx.work.notify()
            await until(lambda: there.heard == 1)
        # One echo more: the notify made alone was never sent (PostgreSQL would have delivered it first).
        assert senders == [here.name, there.name, here.name]
        await until(lambda: not here.others)  # the other one stopped listening: the next look sees it


async def test_the_listening_connection_comes_back_after_it_is_lost(ctx: Context, other: Context) -> None:
    async with pair(ctx, other) as (here, there):
        here.listening.clear()
        async with ctx.db.read() as conn:
            ended = await conn.scalar(
                sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": f"stackcascade-replica-{here.name}"},
            )
        assert ended == 1
        await until(here.listening.is_set)  # LISTEN again, on a new connection
        await until(lambda: there.heard == 1)  # its hello on the new connection
        other.work.notify()
        await until(lambda: here.heard == 2)
