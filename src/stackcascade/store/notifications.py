"""PostgreSQL's LISTEN/NOTIFY between the replicas that share one database.

A notification goes to every session listening on the channel once the sending statement commits, so
it can only announce what is already visible. It carries the sender's name, so a replica can tell its
own notifications from the others'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import sqlalchemy as sa

from stackcascade.store.db import Database

log = logging.getLogger(__name__)

CHANNEL = "stackcascade_work"
_LISTENER = "stackcascade-replica-"  # the listening connections' application_name, then the replica's name
_NOTIFY = sa.text("SELECT pg_notify(:channel, :sender)")
_OTHER_LISTENERS = sa.text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND application_name LIKE :prefix AND application_name <> :own"
)


async def notify(db: Database, sender: str) -> None:
    """Tell every listener on ``CHANNEL``, ``sender`` included, at once (a read: no transaction to wait for)."""
    async with db.read() as conn:
        await conn.execute(_NOTIFY, {"channel": CHANNEL, "sender": sender})


async def other_listeners(db: Database, sender: str) -> int:
    """How many other replicas listen on this database now (their listening connections)."""
    async with db.read() as conn:
        found = await conn.scalar(_OTHER_LISTENERS, {"prefix": _LISTENER + "%", "own": _LISTENER + sender})
    return int(found or 0)


async def listen(
    db: Database,
    sender: str,
    heard: Callable[[str], None],
    stop: asyncio.Event,
    *,
    listening: Callable[[], None] | None = None,
    retry_seconds: float = 1.0,
) -> None:
    """Call ``heard`` with each notification's sender until ``stop`` is set (``sender``: this replica).

    On a connection of its own, outside the pool (it waits for as long as the process runs). A lost
    connection is opened again after ``retry_seconds``, doubling up to 30 s; ``listening`` is called
    each time LISTEN is in place. Notifications sent while no connection listens are lost: the waiting
    claimers' own poll finds that work.
    """
    import psycopg

    delay = retry_seconds
    while not stop.is_set():
        try:
            dsn = db.libpq_dsn()
            async with await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, application_name=_LISTENER + sender
            ) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                delay = retry_seconds
                if listening is not None:
                    listening()
                while not stop.is_set():
                    async for notice in conn.notifies(timeout=0.5):
                        heard(notice.payload)
        except psycopg.Error as exc:
            # The class only: a connection error's text can name the host and user, never needed here.
            log.warning(
                "replica notifications: the listening connection failed (%s); again in %.1f s",
                type(exc).__name__,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30.0)
