"""Many concurrent actors, each with its own database engine, against one queue.

The recorded intervals are conservative: a claim is recorded after its transaction committed and a
finish before its transaction starts, so a recorded overlap implies a real one.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import pytest
import sqlalchemy as sa

from stackcascade.domain.deployments import Status
from stackcascade.domain.roles import Principal, TokenKind
from stackcascade.services import org_settings, queue, runs
from stackcascade.services.context import Context
from stackcascade.store.db import Database
from stackcascade.store.runs import StepUpdate
from stackcascade.store.schema import deployments as deployments_table
from tests.services.helpers import ADMIN, make_stack
from tests.services.helpers import queue as enqueue

pytestmark = pytest.mark.stress
T = TypeVar("T")

LIMITS = {"alpha": 3, "beta": 4}
STACKS_PER_ORG = 10
DEPLOYMENTS_PER_STACK = 5
CLAIMERS = 10
REPLICAS = 3
CLAIMERS_PER_REPLICA = 6
BATCHED_PER_STACK = 3
RUNNER = Principal(token_id="runner-token", name="pool", kind=TokenKind.RUNNER)


def _in_threads(base: Context, count: int, work: Callable[[Context, int], Awaitable[T]]) -> list[T]:
    """Run ``work`` for ``count`` actors, each in its own thread, event loop and database engine.

    Separate threads are what separate server processes or replicas look like to the database: on
    SQLite they contend for the file's write lock, on PostgreSQL for rows.
    """

    def actor(index: int) -> T:
        async def main() -> T:
            context = Context(db=Database(base.db.url, pool_size=2), secrets=base.secrets, lease_seconds=60)
            try:
                return await asyncio.wait_for(work(context, index), timeout=240)
            finally:
                await context.settle()
                await context.db.dispose()

        return asyncio.run(main())

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(actor, range(count)))


@dataclass(frozen=True)
class Mark:
    tick: int
    kind: str
    org: str
    stack: str
    version: int


async def _queue_everywhere(ctx: Context, per_stack: int) -> int:
    """The orgs of ``LIMITS`` with their limits and stacks, ``per_stack`` deployments queued on each stack."""
    for org, limit in LIMITS.items():
        await org_settings.update(ctx, ADMIN, org, {"concurrency": limit})
        for i in range(STACKS_PER_ORG):
            await make_stack(ctx, org, f"s{i}")
    # Interleave creation across stacks so FIFO per stack differs from global order.
    for _ in range(per_stack):
        for org in LIMITS:
            for i in range(STACKS_PER_ORG):
                await enqueue(ctx, org, f"s{i}")
    return len(LIMITS) * STACKS_PER_ORG * per_stack


async def test_concurrent_claimers_keep_every_queue_rule(ctx: Context) -> None:
    total = await _queue_everywhere(ctx, DEPLOYMENTS_PER_STACK)
    ticks = itertools.count()
    marks: list[Mark] = []
    finished = itertools.count(1)
    done = threading.Event()

    async def claimer(actor: Context, index: int) -> None:
        rng = random.Random(index)
        name = f"runner-{index}"
        while not done.is_set():
            row = await queue.claim(actor, name)
            if row is None:
                await asyncio.sleep(0.002)  # idle poll; correctness never depends on it
                continue
            marks.append(Mark(next(ticks), "claim", row.org, row.project, row.version))
            await queue.start(actor, row.id, name)
            await asyncio.sleep(rng.uniform(0.1, 0.25))  # hold the slot so limits are contended
            marks.append(Mark(next(ticks), "finish", row.org, row.project, row.version))
            await queue.finish(actor, row.id, name, Status.SUCCEEDED)
            if next(finished) == total:
                done.set()

    await asyncio.to_thread(_in_threads, ctx, CLAIMERS, claimer)

    await _check(ctx, marks, total)


@pytest.mark.parametrize("next_with_finish", [False, True], ids=["claim-calls", "next-with-finish"])
async def test_long_polling_claimers_of_several_replicas_claiming_in_batches_keep_every_rule(
    ctx: Context, next_with_finish: bool
) -> None:
    """Claimers of one replica take turns, and the one whose turn it is (a claimer, or a finish handing
    work over) claims for all those waiting: each job must reach the claimer it was leased to, and none
    may be leased without reaching anyone. With ``next_with_finish`` (protocol 3) each finish also claims
    its runner's next job."""
    total = await _queue_everywhere(ctx, BATCHED_PER_STACK)
    ticks = itertools.count()
    marks: list[Mark] = []
    finished = itertools.count(1)
    done = threading.Event()
    start = [StepUpdate(0, "source", "running")]

    async def replica(actor: Context, index: int) -> None:
        async def claimer(slot: str) -> None:
            rng = random.Random(slot)
            job = None
            while not done.is_set() or job is not None:
                if job is None:
                    job = await runs.claim(actor, RUNNER, slot, 0.2, start=start)
                    if job is None:
                        continue
                mark = Mark(next(ticks), "claim", str(job["org"]), str(job["project"]), int(job["version"]))
                marks.append(mark)
                await asyncio.sleep(rng.uniform(0.02, 0.08))
                marks.append(Mark(next(ticks), "finish", mark.org, mark.stack, mark.version))
                result = runs.Result(Status.SUCCEEDED)
                if next_with_finish:
                    _, job = await runs.finish_and_claim(
                        actor, RUNNER, slot, str(job["deploymentId"]), result, start=start
                    )
                else:
                    await runs.finish(actor, RUNNER, slot, str(job["deploymentId"]), result)
                    job = None
                if next(finished) == total:
                    done.set()
                    actor.work.close()

        await asyncio.gather(*(claimer(f"replica-{index}-slot-{n}") for n in range(CLAIMERS_PER_REPLICA)))

    await asyncio.to_thread(_in_threads, ctx, REPLICAS, replica)
    await _check(ctx, marks, total)


async def _check(ctx: Context, marks: list[Mark], total: int) -> None:
    """Every deployment claimed once and succeeded; per stack one at a time, in FIFO order; org limits held."""
    claims = [m for m in marks if m.kind == "claim"]
    assert len(claims) == total
    assert len({(m.org, m.stack, m.version) for m in claims}) == total, "a deployment was claimed twice"

    active_per_stack: dict[tuple[str, str], int] = defaultdict(int)
    active_per_org: dict[str, int] = defaultdict(int)
    peak_per_org: dict[str, int] = defaultdict(int)
    versions_per_stack: dict[tuple[str, str], list[int]] = defaultdict(list)
    for mark in sorted(marks, key=lambda m: m.tick):
        key = (mark.org, mark.stack)
        step = 1 if mark.kind == "claim" else -1
        active_per_stack[key] += step
        active_per_org[mark.org] += step
        assert active_per_stack[key] <= 1, f"two deployments of {key} ran at once"
        peak_per_org[mark.org] = max(peak_per_org[mark.org], active_per_org[mark.org])
        if mark.kind == "claim":
            versions_per_stack[key].append(mark.version)
    for org, limit in LIMITS.items():
        assert peak_per_org[org] <= limit, f"{org} ran {peak_per_org[org]} at once, limit {limit}"
    for key, versions in versions_per_stack.items():
        assert versions == sorted(versions), f"{key} ran out of FIFO order: {versions}"
    async with ctx.db.read() as conn:
        statuses = (await conn.execute(sa.select(deployments_table.c.status).distinct())).scalars().all()
    assert statuses == ["succeeded"]


async def test_concurrent_creators_get_unique_sequential_versions(ctx: Context) -> None:
    await make_stack(ctx, "alpha", "busy")
    per_actor = 15

    async def creator(actor: Context, _index: int) -> list[int]:
        return [(await enqueue(actor, "alpha", "busy")).version for _ in range(per_actor)]

    results = await asyncio.to_thread(_in_threads, ctx, CLAIMERS, creator)
    versions = sorted(v for chunk in results for v in chunk)
    assert versions == list(range(1, CLAIMERS * per_actor + 1))
    for chunk in results:
        assert chunk == sorted(chunk)
