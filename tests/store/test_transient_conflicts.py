"""A write that lost to a concurrent one is told apart from a real error (the API answers it 503, retryable)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
import sqlalchemy as sa

from stackcascade.store import schema
from stackcascade.store.db import Database, is_transient_conflict


async def _two_orgs(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(
            schema.orgs.insert(), [{"name": name, "concurrency": 1, "created_at": 1.0} for name in ("a", "b")]
        )


async def test_a_deadlock_postgresql_breaks_is_a_transient_conflict(db: Database) -> None:
    if not db.is_postgres:
        pytest.skip("SQLite has one writer at a time: two transactions never deadlock")
    await _two_orgs(db)
    first_locked, second_locked = asyncio.Event(), asyncio.Event()

    async def lock(first: str, second: str, mine: asyncio.Event, theirs: asyncio.Event) -> None:
        async with db.write() as conn:
            update = schema.orgs.update().values(concurrency=2)
            await conn.execute(update.where(schema.orgs.c.name == first))
            mine.set()
            await theirs.wait()  # each holds one row and asks for the other's
            await conn.execute(update.where(schema.orgs.c.name == second))

    results: list[Any] = await asyncio.gather(
        lock("a", "b", first_locked, second_locked),
        lock("b", "a", second_locked, first_locked),
        return_exceptions=True,
    )
    [failed] = [result for result in results if isinstance(result, BaseException)]
    assert isinstance(failed, sa.exc.DBAPIError)
    assert is_transient_conflict(failed)


async def test_a_real_error_is_not_a_transient_conflict(db: Database) -> None:
    await _two_orgs(db)
    with pytest.raises(sa.exc.IntegrityError) as raised:
        async with db.write() as conn:
            await conn.execute(schema.orgs.insert().values(name="a", concurrency=1, created_at=1.0))
    assert not is_transient_conflict(raised.value)


def test_sqlites_busy_timeout_is_a_transient_conflict_and_its_other_errors_are_not() -> None:
    busy = sa.exc.OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))
    missing = sa.exc.OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: stacks"))
    assert is_transient_conflict(busy)
    assert not is_transient_conflict(missing)
