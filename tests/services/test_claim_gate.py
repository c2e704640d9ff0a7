"""Long-polling claimers of one process take turns, and the one whose turn it is claims for all those waiting
with it: a notify costs the database one transaction, not one per claimer. A runner's finish takes that turn
itself, and can claim the runner's next job too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import sqlalchemy as sa

from stackcascade.domain.deployments import Status
from stackcascade.domain.roles import Principal, TokenKind
from stackcascade.services import runs
from stackcascade.services.context import Context
from stackcascade.services.secrets import SecretBox
from stackcascade.store.db import Database
from stackcascade.store.runs import StepUpdate
from stackcascade.store.schema import deployments
from tests.services.helpers import make_stack, queue
from tests.services.test_cascades import deploy, diamond

ORG = "herd"
RUNNER = Principal(token_id="runner-token", name="pool", kind=TokenKind.RUNNER)
CLAIMERS = 8
START = [StepUpdate(0, "source", "running")]


async def until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until ``condition()`` holds (they only await the database and the signal)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the claimers never got there")


def waiting(ctx: Context) -> int:
    return len(ctx.work._waiters)


@pytest.fixture
async def herd(ctx: Context) -> AsyncIterator[list[asyncio.Task[dict[str, object] | None]]]:
    """``CLAIMERS`` long-polling claims, all waiting for work; closed (and awaited) afterwards."""
    await make_stack(ctx, ORG, "net")
    tasks = [asyncio.create_task(runs.claim(ctx, RUNNER, f"slot-{i}", 30)) for i in range(CLAIMERS)]
    await until(lambda: waiting(ctx) == CLAIMERS)
    try:
        yield tasks
    finally:
        ctx.work.close()
        await asyncio.gather(*tasks)


async def test_one_deployment_wakes_every_claimer_but_costs_one_claim(
    ctx: Context, herd: list[asyncio.Task[dict[str, object] | None]]
) -> None:
    before = ctx.claims.attempts
    deployment = await queue(ctx, ORG, "net")  # commits, then notifies every waiting claimer
    await until(lambda: sum(task.done() for task in herd) == 1 and waiting(ctx) == CLAIMERS - 1)
    [job] = [task.result() for task in herd if task.done()]
    assert job is not None and job["deploymentId"] == deployment.id
    assert ctx.claims.attempts - before == 1  # one claim answered all eight: one job, seven go back to wait


async def test_each_of_several_deployments_queued_at_once_is_claimed(
    ctx: Context, herd: list[asyncio.Task[dict[str, object] | None]]
) -> None:
    for project in ("a", "b", "c"):
        await make_stack(ctx, ORG, project)
    queued = set()
    ctx.work.notify = lambda: None  # type: ignore[method-assign]  # queue all three, then wake once
    for project in ("a", "b", "c"):
        queued.add((await queue(ctx, ORG, project)).id)
    del ctx.work.notify
    before = ctx.claims.attempts
    ctx.work.notify()
    await until(lambda: sum(task.done() for task in herd) == 3 and waiting(ctx) == CLAIMERS - 3)
    jobs = [task.result() for task in herd if task.done()]
    assert {job["deploymentId"] for job in jobs} == queued  # type: ignore[index]
    assert ctx.claims.attempts - before == 1  # one transaction claimed all three, for three claimers
    async with ctx.db.read() as conn:  # each is leased to the claimer whose job it is
        leased = {
            (row.id, row.runner_id)
            for row in (await conn.execute(sa.select(deployments.c.id, deployments.c.runner_id))).all()
        }
    mine = {(task.result()["deploymentId"], f"pool/slot-{i}") for i, task in enumerate(herd) if task.done()}  # type: ignore[index]
    assert mine <= leased


async def test_a_claimer_whose_poll_ran_out_still_asks_for_work_queued_by_another_replica(
    ctx: Context, database_url: str, herd: list[asyncio.Task[dict[str, object] | None]]
) -> None:
    other = Context(db=Database(database_url), secrets=SecretBox.generate())
    try:
        deployment = await queue(other, ORG, "net")  # no notify reaches this process
    finally:
        await other.db.dispose()
    await until(lambda: any(task.done() for task in herd))  # within a poll (a second)
    [job] = [task.result() for task in herd if task.done()]
    assert job is not None and job["deploymentId"] == deployment.id


async def test_a_claimer_cancelled_while_waiting_for_its_turn_is_not_claimed_for(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    deployment = await queue(ctx, ORG, "net")
    await ctx.claims.lock.acquire()  # another claimer's turn
    gone = asyncio.create_task(runs.claim(ctx, RUNNER, "slot-gone", 30))
    await until(lambda: len(ctx.claims.pending) == 1)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert ctx.claims.pending == []
    ctx.claims.lock.release()
    job = await runs.claim(ctx, RUNNER, "slot-here", 0)  # the turn is free again, and only this one asks
    assert job is not None and job["deploymentId"] == deployment.id
    async with ctx.db.read() as conn:
        owner = await conn.scalar(sa.select(deployments.c.runner_id).where(deployments.c.id == deployment.id))
    assert owner == "pool/slot-here"
    assert not ctx.claims.lock.locked()


async def _network_running(ctx: Context) -> dict[str, object]:
    """The diamond's root deployment, claimed and started by ``pool/slot-root``."""
    await diamond(ctx)
    await deploy(ctx, "network")
    job = await runs.claim(ctx, RUNNER, "slot-root", 0, start=START)
    assert job is not None and job["project"] == "network"
    return job


async def test_a_finish_hands_the_members_it_made_ready_to_waiting_claimers_without_waking_them(ctx: Context) -> None:
    ctx.claims.poll_seconds = 60  # no claimer asks on its own while the test runs
    job = await _network_running(ctx)
    herd = [asyncio.create_task(runs.claim(ctx, RUNNER, f"slot-{i}", 30, start=START)) for i in range(3)]
    try:
        await until(lambda: waiting(ctx) == 3)
        ctx.work.notify = lambda: None  # type: ignore[method-assign]  # the wake-ups never come
        before = ctx.claims.attempts
        await runs.finish(ctx, RUNNER, "slot-root", str(job["deploymentId"]), runs.Result(Status.SUCCEEDED))
        # By the time the finish returned, its own turn had claimed database and cluster for two of the three.
        assert ctx.claims.attempts - before == 1
        answered = [request.answer.result() for request in ctx.claims.pending if request.answer.done()]
        assert sorted(answer["project"] for answer in answered) == ["cluster", "database"]
        assert all(answer["started"] for answer in answered)
        await until(lambda: sum(task.done() for task in herd) == 2)
        assert sorted(task.result()["project"] for task in herd if task.done()) == ["cluster", "database"]  # type: ignore[index]
    finally:
        del ctx.work.notify
        ctx.work.close()
        await asyncio.gather(*herd)


async def test_finish_and_claim_gives_the_runner_its_next_job_and_serves_the_waiting_in_the_same_turn(
    ctx: Context,
) -> None:
    ctx.claims.poll_seconds = 60
    job = await _network_running(ctx)
    other = asyncio.create_task(runs.claim(ctx, RUNNER, "slot-other", 30, start=START))
    try:
        await until(lambda: waiting(ctx) == 1)
        before = ctx.claims.attempts
        finished, following = await runs.finish_and_claim(
            ctx, RUNNER, "slot-root", str(job["deploymentId"]), runs.Result(Status.SUCCEEDED), start=START
        )
        assert finished.status == Status.SUCCEEDED.value
        assert following is not None and following["started"] and following["project"] in {"database", "cluster"}
        served = await asyncio.wait_for(other, 10)
        assert served is not None and {served["project"], following["project"]} == {"database", "cluster"}
        assert ctx.claims.attempts - before == 1  # one transaction claimed for both
        async with ctx.db.read() as conn:
            owner = await conn.scalar(
                sa.select(deployments.c.runner_id).where(deployments.c.id == following["deploymentId"])
            )
        assert owner == "pool/slot-root"
    finally:
        ctx.work.close()
        await asyncio.gather(other)


async def test_finish_and_claim_with_nothing_eligible_finishes_and_gives_no_job(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    await queue(ctx, ORG, "net")
    job = await runs.claim(ctx, RUNNER, "slot-a", 0, start=START)
    assert job is not None
    finished, following = await runs.finish_and_claim(
        ctx, RUNNER, "slot-a", str(job["deploymentId"]), runs.Result(Status.FAILED, "boom"), start=START
    )
    assert (finished.status, finished.reason, following) == ("failed", "boom", None)
    assert ctx.claims.pending == []


async def test_a_finish_leaves_the_claim_to_the_turn_under_way(ctx: Context) -> None:
    ctx.claims.poll_seconds = 60
    job = await _network_running(ctx)
    herd = [asyncio.create_task(runs.claim(ctx, RUNNER, f"slot-{i}", 30, start=START)) for i in range(2)]
    try:
        await until(lambda: waiting(ctx) == 2)
        await ctx.claims.lock.acquire()  # a turn is under way
        before = ctx.claims.attempts
        await runs.finish(ctx, RUNNER, "slot-root", str(job["deploymentId"]), runs.Result(Status.SUCCEEDED))
        assert ctx.claims.attempts == before and not any(r.answer.done() for r in ctx.claims.pending)
        ctx.claims.lock.release()  # the notify woke them: they claim in their own turn
        await until(lambda: all(task.done() for task in herd))
        assert sorted(task.result()["project"] for task in herd) == ["cluster", "database"]  # type: ignore[index]
    finally:
        ctx.work.close()
        await asyncio.gather(*herd)


async def test_a_claimer_answered_while_it_waited_for_a_turn_that_looked_free_returns_its_job(ctx: Context) -> None:
    """The lock looks free while the turn is being handed to a claimer that has not run yet; the claimer
    who then waits for it may find its answer set by that turn, and must return it (even when a notify
    says the look came after it): a job leased and then dropped would fail as "runner lost"."""
    gate = ctx.claims
    request = runs._Request("pool/slot-x", None, None, asyncio.get_running_loop().create_future())
    gate.pending.append(request)
    await gate.lock.acquire()

    async def earlier_turn() -> None:
        async with gate.lock:
            request.answer.set_result({"deploymentId": "d-1"})
            gate.empty_at = ctx.work.generation  # it found fewer jobs than claimers

    other = asyncio.create_task(earlier_turn())
    await asyncio.sleep(0)  # ``other`` now waits for the lock
    gate.lock.release()  # the turn goes to ``other``, which has not run yet
    assert not gate.lock.locked()
    job = await runs._claim_in_turn(ctx, request, notified=True)
    assert job == {"deploymentId": "d-1"}
    await other
    assert not gate.lock.locked()
