"""CPU per statement on PostgreSQL: SQLAlchemy's asyncio connection against the store's (``store.pg_direct``).

In a fresh database ``cascade_bench_<random>`` (dropped afterwards), at the current schema, this runs the
same transactions two ways, in alternating rounds so that a change in the machine's speed hits both:

* ``sqlalchemy-async``: ``AsyncEngine.begin()``, statements through ``AsyncConnection.execute`` (a
  greenlet per statement and an adapted cursor awaiting psycopg) — what the store used before;
* ``store``: ``Database.write()``, statements compiled by SQLAlchemy and sent by psycopg directly.

Each transaction makes ``--statements`` (10) statements of the kinds a finish makes: a select by key, a
select with an ``IN`` list, an update with ``RETURNING`` and an insert; ``--concurrency`` (8)
transactions run at once on one event loop (uvloop, as ``cascade serve``). Shown: this process's CPU
per statement (user + system, from ``getrusage``) and wall time per statement, the median of
``--rounds`` (5) rounds, and PostgreSQL's own backends are not counted.

    .venv/bin/python bench/pg_statements.py
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import platform
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import database_url

from stackcascade.store import schema
from stackcascade.store.db import Database

orgs, stacks = schema.orgs, schema.stacks


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _statements(conn: Any, count: int, serial: int) -> None:
    """``count`` statements in the mix of a member's finish: reads by key and by list, an update, an insert."""
    for i in range(count):
        kind = i % 4
        if kind == 0:
            (
                await conn.execute(
                    sa.select(stacks.c.id, stacks.c.tags, stacks.c.outputs).where(stacks.c.id == f"s{i % 20}")
                )
            ).first()
        elif kind == 1:
            ids = [f"s{(i + k) % 20}" for k in range(3)]
            (await conn.execute(sa.select(stacks.c.id, stacks.c.graph_order).where(stacks.c.id.in_(ids)))).all()
        elif kind == 2:
            await conn.scalar(
                stacks.update()
                .where(stacks.c.id == f"s{serial % 20}")
                .values(last_version=stacks.c.last_version + 1)
                .returning(stacks.c.last_version)
            )
        else:
            await conn.execute(orgs.insert().values(name=f"o{serial}-{i}", concurrency=1, created_at=time.time()))


async def _measure(run: Callable[[int], Awaitable[None]], transactions: int, concurrency: int) -> tuple[float, float]:
    cpu0, wall0 = _cpu(), time.perf_counter()
    serial = 0
    while serial < transactions:
        batch = range(serial, min(serial + concurrency, transactions))
        await asyncio.gather(*(run(s) for s in batch))
        serial = batch.stop
    return _cpu() - cpu0, time.perf_counter() - wall0


async def main(args: argparse.Namespace) -> None:
    with database_url("postgresql") as url:
        assert url is not None
        db = Database(url)
        await asyncio.to_thread(db.migrate)
        async with db.write() as conn:
            await conn.execute(orgs.insert().values(name="bench", concurrency=1, created_at=time.time()))
            await conn.execute(
                stacks.insert(),
                [
                    {"id": f"s{i}", "org": "bench", "project": "p", "name": f"s{i}", "tags": {}, "created_at": 1.0}
                    for i in range(20)
                ],
            )
        offset = {"n": 0}

        async def store(serial: int) -> None:
            async with db.write() as conn:
                await _statements(conn, args.statements, offset["n"] + serial)

        async def sqlalchemy_async(serial: int) -> None:
            # SQLAlchemy's own connection and transaction, as before store.pg_direct (its engine's connections
            # are in autocommit mode now: store.pg_direct sends BEGIN itself).
            async with db._engine.connect() as plain:
                conn = await plain.execution_options(isolation_level="READ COMMITTED")
                async with conn.begin():
                    await _statements(conn, args.statements, offset["n"] + serial)

        ways: dict[str, Callable[[int], Awaitable[None]]] = {"sqlalchemy-async": sqlalchemy_async, "store": store}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for run in ways.values():  # warm-up: caches, prepared statements, pool
            await _measure(run, args.concurrency * 4, args.concurrency)
            offset["n"] += args.concurrency * 4
        for _ in range(args.rounds):
            for name, run in ways.items():
                results[name].append(await _measure(run, args.transactions, args.concurrency))
                offset["n"] += args.transactions
        await db.dispose()

    statements = args.transactions * args.statements
    print(
        f"# PostgreSQL statements, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{args.rounds} rounds of {args.transactions} transactions x {args.statements} statements, "
        f"{args.concurrency} at once\n"
    )
    print("| connection | CPU ms/statement (median) | min-max | wall ms/statement (median) |")
    print("|---|---:|---:|---:|")
    for name, rows in results.items():
        cpu = [1e3 * c / statements for c, _ in rows]
        wall = [1e3 * w / statements for _, w in rows]
        print(
            f"| {name} | {statistics.median(cpu):.3f} | {min(cpu):.3f}-{max(cpu):.3f} | {statistics.median(wall):.3f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--transactions", type=int, default=200)
    parser.add_argument("--statements", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    uvloop.run(main(parser.parse_args()))
