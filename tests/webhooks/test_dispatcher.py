"""The dispatcher's loop: commits in quick succession share a round; a commit is never left to the poll."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa

from stackcascade.services import webhooks
from stackcascade.services.context import Context
from stackcascade.services.webhook_client import AttemptResult, OutgoingRequest
from stackcascade.services.webhooks import Scope
from stackcascade.store.schema import webhook_deliveries
from stackcascade.store.schema import webhooks as webhooks_table
from stackcascade.webhooks.dispatcher import Dispatcher
from tests.services.helpers import ADMIN, make_stack
from tests.services.helpers import queue as enqueue

ORG = "acme"
LONG = 3600.0  # a poll or gap that never runs out within a test: only a commit can wake the loop


class Rounds(Dispatcher):
    """Records the events each round fanned out, and lets a test wait for a round."""

    def __init__(self, ctx: Context, **options: Any) -> None:
        super().__init__(ctx, client=None, **options)  # type: ignore[arg-type]  # no HTTP webhooks here
        self.fanned: list[int] = []
        self.changed = asyncio.Condition()

    async def _round(self) -> tuple[int, int]:
        fanned, sent = await super()._round()
        async with self.changed:
            self.fanned.append(fanned)
            self.changed.notify_all()
        return fanned, sent

    async def until(self, done: Callable[[list[int]], bool]) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: done(self.fanned)), 10)


class HeldSleep:
    """An injected sleep that returns only when the test releases it."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.entered = asyncio.Event()
        self.released = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.entered.set()
        await self.released.wait()


@asynccontextmanager
async def running(dispatcher: Dispatcher) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_commits_during_the_gap_after_a_round_are_fanned_out_together(ctx: Context) -> None:
    for name in ("net", "db", "app"):
        await make_stack(ctx, ORG, name)
    sleep = HeldSleep()
    dispatcher = Rounds(ctx, poll_seconds=LONG, min_gap_seconds=LONG, sleep=sleep)
    async with running(dispatcher):
        await dispatcher.until(lambda fanned: len(fanned) == 1)  # the stacks' own events
        await enqueue(ctx, ORG, "net")  # wakes the loop, which must first wait out the gap
        await asyncio.wait_for(sleep.entered.wait(), 10)
        await enqueue(ctx, ORG, "db")
        await enqueue(ctx, ORG, "app")
        assert len(dispatcher.fanned) == 1
        sleep.released.set()
        await dispatcher.until(lambda fanned: len(fanned) == 2)
    assert dispatcher.fanned[1:] == [3]  # one round for three commits (each appended one event)
    assert len(sleep.asked) == 1 and 0 < sleep.asked[0] <= LONG


async def test_a_commit_after_a_quiet_gap_is_fanned_out_without_pausing(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    sleep = HeldSleep()
    gap = 0.05
    dispatcher = Rounds(ctx, poll_seconds=LONG, min_gap_seconds=gap, sleep=sleep)
    async with running(dispatcher):
        await dispatcher.until(lambda fanned: len(fanned) == 1)
        await asyncio.sleep(2 * gap)  # the gap since that round began has passed (the loop's clock)
        await enqueue(ctx, ORG, "net")
        await dispatcher.until(lambda fanned: len(fanned) == 2)
    assert dispatcher.fanned[1:] == [1]
    assert sleep.asked == []


async def test_a_commit_made_while_a_round_runs_gets_its_own_round_without_the_poll(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    await make_stack(ctx, ORG, "db")

    class CommitsDuringItsFirstRound(Rounds):
        async def _round(self) -> tuple[int, int]:
            result = await super()._round()
            if len(self.fanned) == 1:
                await enqueue(ctx, ORG, "db")  # its notify finds nobody waiting
            return result

    await enqueue(ctx, ORG, "net")
    dispatcher = CommitsDuringItsFirstRound(ctx, poll_seconds=LONG, min_gap_seconds=0)
    async with running(dispatcher):
        await dispatcher.until(lambda fanned: len(fanned) == 2)
    assert dispatcher.fanned[0] >= 1 and dispatcher.fanned[1:] == [1]


async def test_rounds_whose_fan_out_created_no_delivery_look_for_due_ones_once_per_poll(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")

    class CountsLooks(Rounds):
        looks = 0

        async def deliver_due(self) -> int:
            self.looks += 1
            return await super().deliver_due()

    dispatcher = CountsLooks(ctx, poll_seconds=LONG, min_gap_seconds=0)
    async with running(dispatcher):
        await dispatcher.until(lambda fanned: len(fanned) == 1)
        for round_count in (2, 3, 4):  # three commits, three rounds, no webhook: no delivery is created
            await enqueue(ctx, ORG, "net")
            await dispatcher.until(lambda fanned, count=round_count: len(fanned) == count)
    assert dispatcher.fanned[1:] == [1, 1, 1]
    assert dispatcher.looks == 1  # the first round's; the next comes a poll later


class HangsOnSlow:
    """A webhook client whose requests to a URL ending in /slow wait until the test releases them."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.sent: list[str] = []

    async def check_target(self, url: str) -> None:
        return None

    async def send(self, request: OutgoingRequest) -> AttemptResult:
        if request.url.endswith("/slow"):
            await self.released.wait()
        self.sent.append(request.url)
        return AttemptResult(sent_at=0.0, duration_ms=1, response_code=200)


async def statuses(ctx: Context) -> dict[str, set[str]]:
    async with ctx.db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(webhooks_table.c.payload_url, webhook_deliveries.c.status).join(
                    webhooks_table, webhooks_table.c.id == webhook_deliveries.c.webhook_id
                )
            )
        ).all()
    found: dict[str, set[str]] = {}
    for url, status in rows:
        found.setdefault(url.rsplit("/", 1)[-1], set()).add(status)
    return found


async def test_a_receiver_that_hangs_holds_up_only_its_own_deliveries(ctx: Context) -> None:
    client = HangsOnSlow()
    ctx.webhook_client = client
    await make_stack(ctx, ORG, "net")
    scope = Scope(ORG, "net", "prod")
    await webhooks.create(ctx, ADMIN, scope, {"name": "slow", "payloadUrl": "http://receiver.test/slow"})
    await webhooks.create(ctx, ADMIN, scope, {"name": "fast", "payloadUrl": "http://receiver.test/fast"})
    dispatcher = Dispatcher(ctx, client, poll_seconds=0.05, min_gap_seconds=0)
    async with running(dispatcher):
        await enqueue(ctx, ORG, "net")  # one event: a delivery to each webhook
        deadline = asyncio.get_running_loop().time() + 10
        while (await statuses(ctx)).get("fast") != {"succeeded"}:
            assert asyncio.get_running_loop().time() < deadline, await statuses(ctx)
            await asyncio.sleep(0.01)  # polls the database; correctness does not depend on the interval
        assert (await statuses(ctx))["slow"] == {"pending"}, "recorded while the slow one still hangs"
        await enqueue(ctx, ORG, "net")  # a later event reaches the fast receiver too, the slow one hanging
        while len([url for url in client.sent if url.endswith("/fast")]) < 2:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        client.released.set()
    await dispatcher.settle()
    assert (await statuses(ctx)) == {"slow": {"succeeded"}, "fast": {"succeeded"}}
