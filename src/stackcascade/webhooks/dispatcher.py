"""The webhook dispatcher: fans events out of the outbox and delivers due webhooks, in a loop.

Several replicas may run one each: fan-out and claims use ``SKIP LOCKED`` on PostgreSQL, and a
delivery leased by a dispatcher that dies comes due again when its lease runs out (at-least-once).
A commit that appended events wakes this process's dispatcher at once; otherwise it polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from stackcascade.services import webhook_delivery
from stackcascade.services.context import Context
from stackcascade.services.webhook_client import AttemptResult, WebhookClient

log = logging.getLogger("stackcascade.webhooks")


class Dispatcher:
    """Sends claimed deliveries with at most ``concurrency`` requests in flight, and at most ``batch``
    claimed and not yet recorded.

    Each delivery is recorded as soon as its attempt ends (together with any others that ended while
    the last record was written), and the room it leaves is claimed again: a receiver that hangs until
    the sender's timeout holds up only its own deliveries, not those to other receivers, nor retries.

    The bound keeps the sender's connection pool small: httpcore probes the socket of every idle
    keep-alive connection each time a request starts or ends, so 100 requests at once to a fast
    receiver cost about 1.4 times the CPU per request of 32 (see docs/benchmarks.md, "Webhook
    delivery"). A claimed delivery waits at most ``ceil(batch / concurrency)`` request timeouts for its
    turn (4 x 10 s with the defaults and the sender's timeout), which must stay well inside the lease
    (60 s).
    """

    def __init__(
        self,
        ctx: Context,
        client: WebhookClient,
        *,
        batch: int = 100,
        concurrency: int = 32,
        poll_seconds: float = 1.0,
        lease_seconds: float = 60.0,
        min_gap_seconds: float = 0.02,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._ctx = ctx
        self._client = client
        self._batch = batch
        self._concurrency = concurrency
        self._poll_seconds = poll_seconds
        self._lease_seconds = lease_seconds
        self._min_gap_seconds = min_gap_seconds
        self._sleep = sleep
        self._more_due = False  # the last look for due deliveries came back full (or found no room)
        self._look_for_due_at = 0.0  # the loop's time at which to look for due deliveries in any case
        self._slots = asyncio.Semaphore(concurrency)
        self._pending: set[asyncio.Task[None]] = set()  # claimed deliveries, until recorded
        self._ended: list[tuple[webhook_delivery.DueDelivery, AttemptResult | None]] = []  # not recorded yet
        self._recording = False
        self._recorded = asyncio.Event()  # set when recorded deliveries left room to claim more

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until ``stop``: at once while a batch comes back full, else when a commit wakes it (or
        after ``poll_seconds``), but never sooner than ``min_gap_seconds`` after the last round began.

        The gap batches the events of commits that come in quick succession (every deployment commits
        several): one round per gap under load instead of one or two per commit, each round a write
        transaction and four statements. An idle dispatcher answers a commit at once.
        """
        loop = asyncio.get_running_loop()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                began, seen = loop.time(), self._ctx.outbox.generation
                self._recorded.clear()
                try:
                    fanned, sent = await self._round()
                    more = fanned >= webhook_delivery.FAN_OUT_BATCH or sent >= self._batch  # a full batch
                except Exception as exc:  # the dispatcher must survive a database hiccup
                    log.warning("webhook dispatch failed: %s: %s", type(exc).__name__, exc)
                    more = False
                if more:
                    continue
                if self._ctx.outbox.generation == seen:  # nothing committed since the round began
                    waits: list[Awaitable[object]] = [self._ctx.outbox.wait(self._poll_seconds)]
                    if self._more_due:  # more are due than there was room for: claim them when room is made
                        waits.append(self._recorded.wait())
                    await self._until(waits, stopping)
                pause = self._min_gap_seconds - (loop.time() - began)
                if pause > 0 and not stop.is_set():
                    await self._until([self._sleep(pause)], stopping)
        finally:
            stopping.cancel()
            await self.settle()  # what was claimed is sent and recorded (each send ends within its timeout)

    @staticmethod
    async def _until(waiting: list[Awaitable[object]], stopping: asyncio.Future[Any]) -> None:
        tasks = [asyncio.ensure_future(each) for each in waiting]
        await asyncio.wait({*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def step(self) -> bool:
        """One round: fan out a batch of events, then send one batch of due deliveries and wait until they
        are recorded; True if any work."""
        fanned, sent = await self._round(always_deliver=True)
        await self.settle()
        return bool(fanned or sent)

    async def settle(self) -> None:
        """Wait until every claimed delivery is sent and recorded."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def _round(self, *, always_deliver: bool = False) -> tuple[int, int]:
        """Events fanned out and deliveries sent.

        Deliveries come due when a fan-out creates them, when a retry's delay runs out, or when another
        dispatcher's lease on them does; so due deliveries are looked for after a fan-out that created
        some, after a full batch, and otherwise once per ``poll_seconds``, not on every commit's round.
        """
        fanned = await webhook_delivery.fan_out(self._ctx)
        now = asyncio.get_running_loop().time()
        if not (always_deliver or fanned.deliveries or self._more_due or now >= self._look_for_due_at):
            return fanned.events, 0
        sent = await self.deliver_due()
        self._look_for_due_at = now + self._poll_seconds
        return fanned.events, sent

    async def deliver_due(self) -> int:
        """Claim as many due deliveries as there is room for and start sending them; how many were claimed."""
        room = self._batch - len(self._pending)
        if room <= 0:
            self._more_due = True
            return 0
        due = await webhook_delivery.claim_due(self._ctx, room, self._lease_seconds)
        self._more_due = len(due) >= room
        for item in due:
            task = asyncio.create_task(self._deliver(item))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return len(due)

    async def _deliver(self, item: webhook_delivery.DueDelivery) -> None:
        result: AttemptResult | None = None
        if not item.refused:
            try:
                async with self._slots:
                    result = await self._client.send(item.request)
            except Exception as exc:  # not recorded: its lease runs out and it comes due again
                log.warning("webhook delivery %s failed: %s: %s", item.delivery_id, type(exc).__name__, exc)
                return
        self._ended.append((item, result))
        if self._recording:
            return  # the record being written takes this one along next
        self._recording = True
        try:
            # The attempts that end within the gap share the record's transaction (under load, many do).
            await self._sleep(self._min_gap_seconds)
            while self._ended:  # one transaction for everything that ended meanwhile
                ended, self._ended = self._ended, []
                try:
                    await webhook_delivery.record(self._ctx, ended)
                except Exception as exc:  # their leases run out and they come due again (at-least-once)
                    log.warning("recording %d webhook deliveries failed: %s: %s", len(ended), type(exc).__name__, exc)
                self._recorded.set()
        finally:
            self._recording = False
