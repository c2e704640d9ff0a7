"""What every service needs: the database, the secret box, settings and a clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from stackcascade.services.secrets import SecretBox
from stackcascade.store.db import Database


class WorkSignal:
    """Wakes long-polling claimers of this process when work may have become available.

    Only a hint: claimers also poll, so work created by another replica is found within a second.
    """

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter)

    async def wait(self, seconds: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(slots=True)
class Context:
    db: Database
    secrets: SecretBox
    public_url: str = "http://127.0.0.1:8080"
    org_concurrency: int = 25
    lease_seconds: float = 60.0
    clock: Callable[[], float] = field(default=time.time)
    max_log_bytes: int = 5 * 1024 * 1024
    work: WorkSignal = field(default_factory=WorkSignal)

    def now(self) -> float:
        return self.clock()

    def console_url(self, *parts: str) -> str:
        return "/".join([self.public_url.rstrip("/"), *parts])
