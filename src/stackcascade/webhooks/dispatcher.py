"""The webhook dispatcher: fans events out of the outbox and delivers due webhooks, in a loop.

Several replicas may run one each: fan-out and claims use ``SKIP LOCKED`` on PostgreSQL, and a
delivery leased by a dispatcher that dies comes due again when its lease runs out (at-least-once).
A commit that appended events wakes this process's dispatcher at once; otherwise it polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from stackcascade.services import webhook_delivery
from stackcascade.services.context import Context
from stackcascade.services.webhook_client import AttemptResult, WebhookClient

log = logging.getLogger("stackcascade.webhooks")


class Dispatcher:
    """Sends each claimed batch with at most ``concurrency`` requests in flight.

    The bound keeps the sender's connection pool small: httpcore probes the socket of every idle
    keep-alive connection each time a request starts or ends, so 100 requests at once to a fast
    receiver cost about 1.4 times the CPU per request of 32 (see docs/benchmarks.md, "Webhook
    delivery"). A batch takes at most ``ceil(batch / concurrency)`` request timeouts (4 x 10 s with
    the defaults and the sender's timeout), which must stay well inside the lease (60 s).
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
    ) -> None:
        self._ctx = ctx
        self._client = client
        self._batch = batch
        self._concurrency = concurrency
        self._poll_seconds = poll_seconds
        self._lease_seconds = lease_seconds

    async def run(self, stop: asyncio.Event) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                try:
                    busy = await self.step()
                except Exception as exc:  # the dispatcher must survive a database hiccup
                    log.warning("webhook dispatch failed: %s: %s", type(exc).__name__, exc)
                    busy = False
                if not busy:
                    waking = asyncio.ensure_future(self._ctx.outbox.wait(self._poll_seconds))
                    await asyncio.wait({waking, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    waking.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waking
        finally:
            stopping.cancel()

    async def step(self) -> bool:
        """One round: fan out a batch of events, then send one batch of due deliveries; True if any work."""
        fanned = await webhook_delivery.fan_out(self._ctx)
        sent = await self.deliver_due()
        return bool(fanned or sent)

    async def deliver_due(self) -> int:
        due = await webhook_delivery.claim_due(self._ctx, self._batch, self._lease_seconds)
        if not due:
            return 0

        slots = asyncio.Semaphore(self._concurrency)

        async def attempt(item: webhook_delivery.DueDelivery) -> AttemptResult | None:
            if item.refused:
                return None
            async with slots:
                return await self._client.send(item.request)

        results = await asyncio.gather(*(attempt(item) for item in due))
        await webhook_delivery.record(self._ctx, list(zip(due, results, strict=True)))
        return len(due)
