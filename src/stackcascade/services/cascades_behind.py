"""Cascades a transaction left behind: advanced right after it commits, each in a transaction of its own.

A deployment superseded under ``skipIntermediateDeployments`` ends inside another deployment's
transaction (the finish of an earlier deployment of its stack, or a claim), which advances only its own
cascade: taking the lock of the superseded member's cascade too could deadlock with that cascade's own
finishes. Without this, the member read ``queued`` and its descendants waited until the lease sweeper's
``cascades.reconcile`` (up to 5 s); the sweeper still catches any a crash left behind.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the context holds one of these
    from stackcascade.services.context import Context

log = logging.getLogger("stackcascade.cascades")


class CascadesBehind:
    def __init__(self) -> None:
        self._advancing: set[asyncio.Task[None]] = set()

    def after_commit(self, ctx: Context, cascade_ids: frozenset[str]) -> None:
        """This process committed a transaction that ended members of these cascades: advance them, soon."""
        task = asyncio.get_running_loop().create_task(self._advance(ctx, sorted(cascade_ids)))
        self._advancing.add(task)
        task.add_done_callback(self._advancing.discard)

    async def settle(self) -> None:
        """Wait for the advances ``after_commit`` started (before shutting down, and in tests)."""
        while self._advancing:
            await asyncio.gather(*self._advancing)

    @staticmethod
    async def _advance(ctx: Context, cascade_ids: list[str]) -> None:
        from stackcascade.services.cascades import advance_in  # it imports the context, which imports this

        queued = False
        for cascade_id in cascade_ids:
            try:
                async with ctx.db.write() as conn:
                    queued |= await advance_in(conn, cascade_id, ctx.now())
            except Exception as exc:  # committed whatever happens here: the lease sweeper reconciles it
                log.warning("advancing cascade %s after a superseded member failed: %s", cascade_id, exc)
        if queued:
            ctx.work.notify()
