"""Replicas that share one PostgreSQL database wake each other's claimers.

Without this, work queued on one replica (a finish that made cascade members ready, a deployment
created through its API) reaches the runners long-polling another replica at their next poll, up to a
second later. With it, each notify of this process's claimers is passed on with PostgreSQL's NOTIFY,
and a notification from another replica notifies this process's claimers. A replica that is alone
sends nothing: it looks every few seconds whether another one listens, and one that starts listening
says so (a notification of its own), so the others know at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from stackcascade.services.context import Context
from stackcascade.store import notifications

log = logging.getLogger(__name__)


class ReplicaSignals:
    """This process's side of it: ``run`` listens and sends until stopped (``cascade serve`` starts it)."""

    def __init__(self, ctx: Context, *, look_seconds: float = 5.0, retry_seconds: float = 1.0) -> None:
        self.ctx = ctx
        self.name = uuid.uuid4().hex[:16]
        self.look_seconds = look_seconds  # how often to look whether other replicas listen
        self.retry_seconds = retry_seconds  # the first wait before the listening connection is opened again
        self.listening = asyncio.Event()  # set each time LISTEN is in place
        self.others = False  # whether another replica listened at the last look
        self.heard = 0  # notifications from other replicas
        self._due = asyncio.Event()
        self._hello = False  # listening anew: tell the others, alone or not

    async def run(self, stop: asyncio.Event) -> None:
        """Listen, and pass this process's notifies on, until ``stop`` is set."""
        self.ctx.work.broadcast = self._due.set
        listener = asyncio.create_task(
            notifications.listen(
                self.ctx.db,
                self.name,
                self._on_notification,
                stop,
                listening=self._on_listening,
                retry_seconds=self.retry_seconds,
            )
        )
        try:
            await self._send_until(stop)
        finally:
            self.ctx.work.broadcast = None
            listener.cancel()  # rather than wait for its next look at ``stop``
            await asyncio.wait({listener})  # its own cancellation is not ours to raise

    def _on_listening(self) -> None:
        self.listening.set()
        self._hello = True
        self._due.set()

    def _on_notification(self, sender: str) -> None:
        if sender != self.name:  # our own come back too
            self.heard += 1
            self.others = True
            self.ctx.work.notify(broadcast=False)

    async def _send_until(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_look = loop.time()
        while not stop.is_set():
            if loop.time() >= next_look:
                heard = self.heard
                found = await self._look()
                self.others = found or self.heard > heard  # a hello heard meanwhile is newer than the look
                next_look = loop.time() + self.look_seconds
            woken = asyncio.ensure_future(self._due.wait())
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({woken, stopped}, timeout=max(0.0, next_look - loop.time()))
            finally:
                for waiter in (woken, stopped):
                    waiter.cancel()
            if self._due.is_set() and not stop.is_set():
                self._due.clear()  # the notifies until this send are all in it
                if self.others or self._hello:
                    self._hello = False
                    await self._send()

    async def _look(self) -> bool:
        try:
            return await notifications.other_listeners(self.ctx.db, self.name) > 0
        except Exception as exc:  # the database is away: keep the last answer, look again later
            log.warning("replica notifications: could not look for other replicas (%s)", type(exc).__name__)
            return self.others

    async def _send(self) -> None:
        try:
            await notifications.notify(self.ctx.db, self.name)
        except Exception as exc:  # their claimers still poll: the work is found within a second
            log.warning("replica notifications: could not notify the other replicas (%s)", type(exc).__name__)
