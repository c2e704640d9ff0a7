"""KeyedBatches: one turn at a time per key, each turn for every item that waited for it."""

from __future__ import annotations

import asyncio

import pytest

from stackcascade.services.batches import KeyedBatches


class Work:
    """Records each turn's items; a turn waits for ``release`` when it is told to."""

    def __init__(self) -> None:
        self.turns: list[frozenset[str]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.running = 0
        self.most_at_once = 0

    async def __call__(self, items: frozenset[str]) -> None:
        self.turns.append(items)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.started.set()
        try:
            await self.release.wait()
        finally:
            self.running -= 1


async def test_items_submitted_during_a_turn_share_the_next_turn() -> None:
    batches, work = KeyedBatches(), Work()
    work.release.clear()
    first = asyncio.create_task(batches.submit("c1", "network", work))
    await work.started.wait()
    later = [asyncio.create_task(batches.submit("c1", name, work)) for name in ("database", "cluster", "dns")]
    await asyncio.sleep(0)  # they join the waiting batch
    work.release.set()
    await asyncio.gather(first, *later)
    assert work.turns == [frozenset({"network"}), frozenset({"database", "cluster", "dns"})]
    assert work.most_at_once == 1
    assert batches.turns == 2
    assert len(batches) == 0  # nothing is kept once everyone has returned


async def test_different_keys_take_turns_independently() -> None:
    batches, work = KeyedBatches(), Work()
    work.release.clear()
    tasks = [asyncio.create_task(batches.submit(key, "x", work)) for key in ("c1", "c2", "c3")]
    while work.running < 3:
        await asyncio.sleep(0)
    assert work.most_at_once == 3
    work.release.set()
    await asyncio.gather(*tasks)
    assert len(work.turns) == 3


async def test_a_failed_turn_fails_everyone_in_it_and_the_next_batch_still_runs() -> None:
    batches = KeyedBatches()
    release = asyncio.Event()
    seen: list[frozenset[str]] = []

    async def work(items: frozenset[str]) -> None:
        seen.append(items)
        if len(seen) == 2:
            raise RuntimeError("the database went away")
        await release.wait()

    first = asyncio.create_task(batches.submit("c1", "a", work))
    await asyncio.sleep(0)
    failing = [asyncio.create_task(batches.submit("c1", name, work)) for name in ("b", "c")]
    await asyncio.sleep(0)
    release.set()
    await first
    for task in failing:
        with pytest.raises(RuntimeError, match="the database went away"):
            await task
    await batches.submit("c1", "d", work)  # the key is usable again
    assert seen == [frozenset("a"), frozenset("bc"), frozenset("d")]


async def test_the_turn_outlives_a_cancelled_caller_and_the_others_get_its_outcome() -> None:
    batches, work = KeyedBatches(), Work()
    work.release.clear()
    runner = asyncio.create_task(batches.submit("c1", "a", work))
    await work.started.wait()
    # "b" joins the next batch; "a"'s caller is cancelled while its turn runs.
    waiter = asyncio.create_task(batches.submit("c1", "b", work))
    await asyncio.sleep(0)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert work.running == 1  # the turn goes on
    work.release.set()
    await waiter
    assert work.turns == [frozenset("a"), frozenset("b")]
    assert len(batches) == 0
