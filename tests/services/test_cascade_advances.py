"""A runner's finish commits first and its cascade is advanced right after, in turns shared by the
members of that cascade that finished together; an advance that failed is made up by the sweeper."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import pytest

from stackcascade.domain.deployments import Status
from stackcascade.services import cascades, queue
from stackcascade.services.context import Context
from tests.services.helpers import ADMIN
from tests.services.test_cascades import deploy, deployed, diamond, members, run_next


async def claim_started(ctx: Context, runner: str) -> Any:
    row = await queue.claim(ctx, runner)
    assert row is not None
    await queue.start(ctx, row.id, runner)
    return row


async def test_members_finishing_together_advance_their_cascade_in_one_turn(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    await diamond(ctx)
    root = await deploy(ctx, "network")
    await run_next(ctx, "network")
    first, second = await claim_started(ctx, "r1"), await claim_started(ctx, "r2")
    assert {first.project, second.project} == {"database", "cluster"}

    advanced: list[set[str]] = []
    advance_in = cascades.advance_in

    async def recording(conn: Any, cascade_id: str, now: float, *, finished: Collection[str] = ()) -> bool:
        advanced.append(set(finished))
        return await advance_in(conn, cascade_id, now, finished=finished)

    monkeypatch.setattr(cascades, "advance_in", recording)
    # Another advance of the cascade holds the turn until both finishes have committed and asked for theirs.
    submitted: list[str] = []
    both_asked, release = asyncio.Event(), asyncio.Event()
    submit = ctx.advances.submit

    async def asking(key: str, item: str, work: Callable[[frozenset[str]], Awaitable[None]]) -> None:
        submitted.append(item)
        if len(submitted) == 3:
            both_asked.set()
        await submit(key, item, work)

    async def hold(_: frozenset[str]) -> None:
        await release.wait()

    monkeypatch.setattr(ctx.advances, "submit", asking)
    turns_before = ctx.advances.turns
    holder = asyncio.create_task(ctx.advances.submit(root.cascade_id, "holder", hold))
    finishes = [
        asyncio.create_task(queue.finish(ctx, row.id, runner, Status.SUCCEEDED))
        for row, runner in ((first, "r1"), (second, "r2"))
    ]
    await both_asked.wait()
    release.set()
    await asyncio.gather(holder, *finishes)

    assert advanced == [{"database/prod", "cluster/prod"}]  # one advance for both
    assert ctx.advances.turns == turns_before + 2  # the holder's turn, then one for both finishes
    state = await members(ctx, root.cascade_id)
    assert state["database"][0] == state["cluster"][0] == "succeeded"
    assert state["app"] == ("queued", None)
    await run_next(ctx, "app")
    assert await deployed(ctx) == Counter(network=1, database=1, cluster=1, app=1)
    assert (await cascades.get(ctx, ADMIN, "acme", root.cascade_id))[0].status == "succeeded"


async def test_a_finish_whose_advance_failed_stands_and_the_sweeper_advances_the_cascade(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await diamond(ctx)
    root = await deploy(ctx, "network")

    async def broken(*_: Any, **__: Any) -> bool:
        raise RuntimeError("the connection was lost")

    monkeypatch.setattr(cascades, "advance_in", broken)
    with caplog.at_level(logging.WARNING, logger="stackcascade.cascades"):
        finished = await run_next(ctx, "network")
    assert finished.status == "succeeded"  # the finish committed all the same
    assert "the connection was lost" in caplog.text
    assert (await members(ctx, root.cascade_id))["database"] == ("waiting", None)
    monkeypatch.undo()

    assert await cascades.reconcile(ctx) == 1
    state = await members(ctx, root.cascade_id)
    assert state["network"][0] == "succeeded"
    assert state["database"][0] == state["cluster"][0] == "queued"
    await run_next(ctx, "cluster")  # both queued by the sweeper's advance, in the plan's order
    await run_next(ctx, "database")
    await run_next(ctx, "app")
    assert await deployed(ctx) == Counter(network=1, database=1, cluster=1, app=1)
