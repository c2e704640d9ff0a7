"""A member's finish locks only the members it decides: what it leaves to the catch-up after its commit,
and what the sweeper's reconcile does when that catch-up is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

import pytest

from stackcascade.domain.deployments import Status
from stackcascade.services import cascades, deployments, queue
from stackcascade.services.context import Context
from stackcascade.store import cascades as store
from tests.services.helpers import ADMIN
from tests.services.test_cascade_races import ORG, graph, states

# Waves (longest path from root): x 1, a 2, b 3, p1 1, p2 2, p3 3, z 4. When x fails, its finish locks a
# and z (wave 2 and 4) and skips both; b (wave 3, below a) then comes before z in the lock order, so the
# finish cannot lock it and leaves b to the catch-up.
EDGES = [
    ("root", "x"),
    ("root", "p1"),
    ("p1", "p2"),
    ("p2", "p3"),
    ("p3", "z"),
    ("x", "z"),
    ("x", "a"),
    ("a", "b"),
]


async def claim_all(ctx: Context) -> dict[str, Any]:
    """Claim and start every queued deployment, each for its own runner: by project."""
    claimed: dict[str, Any] = {}
    while (row := await queue.claim(ctx, f"runner-{len(claimed)}")) is not None:
        await queue.start(ctx, row.id, row.runner_id)
        claimed[row.project] = row
    return claimed


async def finish(ctx: Context, row: Any, status: Status = Status.SUCCEEDED) -> None:
    await queue.finish(ctx, row.id, row.runner_id, status)


async def up_to_the_failure(ctx: Context) -> tuple[str, Any]:
    """Run root, p1, p2 and p3; return the cascade and x's claimed deployment (z now waits only for x)."""
    await graph(ctx, EDGES)
    root = await deployments.create(ctx, ADMIN, ORG, "root", "prod", {"operation": "update"})
    await finish(ctx, (await claim_all(ctx))["root"])
    first = await claim_all(ctx)
    assert set(first) == {"x", "p1"}
    await finish(ctx, first["p1"])
    for project in ("p2", "p3"):
        await finish(ctx, (await claim_all(ctx))[project])
    assert (await states(ctx, root.cascade_id))["z"][0] == "waiting"
    return root.cascade_id, first["x"]


async def test_a_skip_below_the_lock_order_is_carried_on_by_the_catch_up(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    caught_up: list[list[str]] = []
    catch_up = cascades.catch_up

    async def spy(actor: Context, cascade_ids: Collection[str]) -> None:
        caught_up.append(sorted(cascade_ids))
        await catch_up(actor, cascade_ids)

    monkeypatch.setattr(cascades, "catch_up", spy)
    cascade_id, x = await up_to_the_failure(ctx)
    caught_up.clear()
    await finish(ctx, x, Status.FAILED)
    assert caught_up == [[cascade_id]]
    state = await states(ctx, cascade_id)
    assert state["a"] == ("skipped", "upstream x/prod failed")
    assert state["z"] == ("skipped", "upstream x/prod failed")
    assert state["b"][0] == "skipped"
    assert "a/prod" in (state["b"][1] or "")
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, cascade_id)
    assert cascade.status == "failed"
    assert await claim_all(ctx) == {}


async def test_a_lost_catch_up_is_done_by_the_sweepers_reconcile(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    cascade_id, x = await up_to_the_failure(ctx)

    async def lost(_actor: Context, _cascade_ids: Collection[str]) -> None:
        """The process stopped right after the finish committed."""

    with monkeypatch.context() as patch:
        patch.setattr(cascades, "catch_up", lost)
        await finish(ctx, x, Status.FAILED)
    assert (await states(ctx, cascade_id))["b"] == ("waiting", None)
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, cascade_id)
    assert cascade.status == "running"

    assert await cascades.reconcile(ctx) == 1
    assert (await states(ctx, cascade_id))["b"][0] == "skipped"
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, cascade_id)
    assert cascade.status == "failed"
    assert await cascades.reconcile(ctx) == 0  # nothing left behind


async def test_the_last_members_finish_ends_the_cascade_without_a_catch_up(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The happy path needs no second transaction: the last finish sets the cascade's final status."""
    cascade_id, x = await up_to_the_failure(ctx)

    async def refuse(_actor: Context, cascade_ids: Collection[str]) -> None:
        assert not cascade_ids, "no catch-up is needed when every member is decided in order"

    monkeypatch.setattr(cascades, "catch_up", refuse)
    await finish(ctx, x)
    queued = await claim_all(ctx)
    assert set(queued) == {"a", "z"}
    await finish(ctx, queued["z"])
    await finish(ctx, queued["a"])
    await finish(ctx, (await claim_all(ctx))["b"])
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, cascade_id)
    assert cascade.status == "succeeded"
    assert all(status == "succeeded" for status, _ in (await states(ctx, cascade_id)).values())


async def test_two_finishes_that_wrote_their_member_twice_both_lock_the_cascade_row(ctx: Context) -> None:
    """Updating a member row a second time in one transaction makes PostgreSQL's foreign key check take a
    KEY SHARE lock on the cascade row. Two finishes holding that and then asking for the cascade row (to
    set its final status) must queue, not deadlock: the row lock does not conflict with KEY SHARE."""
    if not ctx.db.is_postgres:
        pytest.skip("SQLite has one writer at a time: two transactions never hold locks together")
    await graph(ctx, [("root", "a"), ("root", "b")])
    cascade_id = (await deployments.create(ctx, ADMIN, ORG, "root", "prod", {"operation": "update"})).cascade_id
    both_wrote = asyncio.Barrier(2)

    async def finish_member(stack: str) -> None:
        async with ctx.db.write() as conn:
            for moment in (1.0, 2.0):  # as a finish does: outputs_changed, then the member's status
                await store.update_member(conn, cascade_id, stack, modified_at=moment)
            await both_wrote.wait()
            await store.lock_row(conn, cascade_id)

    results = await asyncio.wait_for(
        asyncio.gather(finish_member("a/prod"), finish_member("b/prod"), return_exceptions=True), timeout=30
    )
    assert results == [None, None]
