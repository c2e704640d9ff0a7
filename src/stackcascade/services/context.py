"""What every service needs: the database, the secret box, settings and a clock."""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stackcascade.domain.backoff import RetryPolicy
from stackcascade.services.cascades_behind import CascadesBehind
from stackcascade.services.org_graphs import OrgGraphs
from stackcascade.services.secrets import SecretBox
from stackcascade.services.webhook_client import WebhookClient
from stackcascade.store.db import Database


class WorkSignal:
    """Wakes long-polling claimers of this process when work may have become available.

    Only a hint: claimers also poll, so work created by another replica is found within a second even
    without ``broadcast`` (on PostgreSQL, ``services.replica_signals`` tells the other replicas at once).
    """

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()
        self.closed = False
        self.generation = 0  # how many notifies so far
        self.broadcast: Callable[[], None] | None = None  # tells the other replicas, after each notify here

    def close(self) -> None:
        """The process is shutting down: wake every waiter, and long-polls return at once from now on
        (``services.runs`` claims nothing more once it is closed)."""
        self.closed = True
        self.notify(broadcast=False)

    def notify(self, *, broadcast: bool = True) -> None:
        """Wake this process's claimers (called after the commit that made work claimable); and, unless
        the notify came from another replica (``broadcast=False``), the other replicas' claimers too."""
        if broadcast and self.broadcast is not None:
            self.broadcast()
        self.generation += 1
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter)

    async def wait(self, seconds: float) -> bool:
        """Until notified (True) or ``seconds`` passed (False)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            return False
        finally:
            self._waiters.discard(waiter)
        return True


class ClaimGate:
    """This process's claim attempts, one at a time, each for every claimer waiting for a turn.

    A notify wakes every long-polling claimer. They take turns (on PostgreSQL their claims would queue
    on the org's row lock one after another anyway), and the one whose turn it is claims, in one
    transaction, a deployment for each claimer in ``pending`` (``services.runs``); a runner's finish
    takes a turn itself when none is under way. Once an attempt that began after the latest notify found
    too few, the claimers woken by that notify go back to waiting without asking the database. A claimer
    woken by its poll timeout always asks: work queued by another replica may send no notify here (on
    SQLite, or while the replicas' notification connection is down).
    """

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.pending: list[Any] = []  # every claimer in a long poll (``services.runs`` fills it)
        self.empty_at = -1  # the notify generation at which an attempt last found nothing
        self.attempts = 0  # attempts that asked the database
        self.poll_seconds = 1.0  # how often a waiting claimer asks without a notify (other replicas' work)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class AuthCache:
    """Recently authenticated tokens, so most requests skip the token lookup.

    An entry lives ``ttl`` seconds at most (never past the token's expiry). Revoking through this
    process drops it at once; a revocation made by another replica takes effect within ``ttl``.
    """

    def __init__(self, ttl: float = 10.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self._size = size
        self._entries: dict[str, tuple[Any, float]] = {}

    def get(self, token_hash: str, now: float) -> Any | None:
        entry = self._entries.get(token_hash)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def put(self, token_hash: str, principal: Any, valid_until: float) -> None:
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[token_hash] = (principal, valid_until)

    def forget(self, token_id: str) -> None:
        for key in [k for k, (p, _) in self._entries.items() if getattr(p, "token_id", None) == token_id]:
            del self._entries[key]


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
    claims: ClaimGate = field(default_factory=ClaimGate)
    auth_cache: AuthCache = field(default_factory=AuthCache)
    # Webhooks: the HTTP side (None: ping and HTTP webhooks are refused), the retry policy, a source of
    # randomness for jitter, and the signal that wakes the dispatcher when events were committed.
    webhook_client: WebhookClient | None = None
    webhook_retry: RetryPolicy = field(default_factory=RetryPolicy)
    random: Callable[[], float] = field(default=random.random)
    outbox: WorkSignal = field(default_factory=WorkSignal)
    # Each recently planned org's deployment graph, indexed (one per process and database).
    graphs: OrgGraphs = field(default_factory=OrgGraphs)
    # Cascades a superseded member's transaction left behind, advanced after its commit.
    behind: CascadesBehind = field(default_factory=CascadesBehind)

    def __post_init__(self) -> None:
        self.db.on_events_committed = self.outbox.notify
        self.db.on_graphs_committed = functools.partial(self.graphs.after_commit, self.db)
        self.db.on_cascades_behind = functools.partial(self.behind.after_commit, self)

    async def settle(self) -> None:
        """Wait for the work this process started after its commits (before shutting down, and in tests)."""
        await self.behind.settle()
        await self.graphs.settle()

    @property
    def stopping(self) -> bool:
        """Shutdown has begun (``stop_waiting``): long polls and live streams return instead of waiting."""
        return self.work.closed

    def stop_waiting(self) -> None:
        """Shutdown begins: every long-polling claim of this process answers "no work" now and claims
        nothing more, and every live stream ends (its client reconnects to the next server). Otherwise
        they would hold the shutdown until the server cancels them (a 500 and a traceback)."""
        self.work.close()
        self.outbox.notify(broadcast=False)  # the live streams wait on it; woken, they see ``stopping``

    def now(self) -> float:
        return self.clock()

    def console_url(self, *parts: str) -> str:
        return "/".join([self.public_url.rstrip("/"), *parts])
