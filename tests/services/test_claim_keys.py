"""A claim (or a finish that claims) whose answer was lost: the retry gets the same job back."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from stackcascade.domain.deployments import Status
from stackcascade.domain.errors import Conflict, Unauthenticated
from stackcascade.domain.roles import Principal, TokenKind
from stackcascade.services import queue, runs, tokens
from stackcascade.services.context import Context
from stackcascade.store import deployments as rows
from stackcascade.store.runs import StepUpdate
from stackcascade.store.schema import deployments
from tests.services.helpers import make_stack
from tests.services.helpers import queue as enqueue

ORG = "acme"
RUNNER = Principal(token_id="runner-token", name="pool", kind=TokenKind.RUNNER)
SLOT = "slot-0"
OWNER = runs.owner_of(RUNNER, SLOT)
START = [StepUpdate(0, "source", "running")]
SUCCEEDED = runs.Result(Status.SUCCEEDED, None, {"url": "x"}, frozenset(), None)


async def _queued(ctx: Context, *projects: str) -> None:
    for project in projects:
        await make_stack(ctx, ORG, project)
        await enqueue(ctx, ORG, project)


async def _state(ctx: Context, deployment_id: str) -> tuple[str, str | None, float | None]:
    async with ctx.db.read() as conn:
        row = await rows.get(conn, deployment_id)
    assert row is not None
    return row.status, row.runner_id, row.started_at


async def test_a_retried_claim_gets_the_deployment_its_lost_answer_carried_with_a_new_token(ctx: Context) -> None:
    await _queued(ctx, "net", "db")
    first = await runs.claim(ctx, RUNNER, SLOT, 0, START, key="k1")
    assert first is not None
    before = await _state(ctx, first["deploymentId"])

    again = await runs.claim(ctx, RUNNER, SLOT, 0, START, key="k1", retried=True)

    assert again is not None
    assert again["deploymentId"] == first["deploymentId"]
    assert again["started"] is True
    assert await _state(ctx, first["deploymentId"]) == before  # leased and started once, not again
    assert again["deploymentToken"] != first["deploymentToken"]
    principal = await tokens.authenticate(ctx, f"token {again['deploymentToken']}")
    assert principal.kind is TokenKind.DEPLOYMENT
    with pytest.raises(Unauthenticated):  # the lost answer's token is revoked: no one holds it
        await tokens.authenticate(ctx, f"token {first['deploymentToken']}")


async def test_a_redelivered_job_that_its_claim_did_not_start_is_still_to_be_started(ctx: Context) -> None:
    await _queued(ctx, "net")
    first = await runs.claim(ctx, RUNNER, SLOT, 0, key="k1")  # protocol 1: the runner starts it itself
    assert first is not None and "started" not in first

    again = await runs.claim(ctx, RUNNER, SLOT, 0, key="k1", retried=True)

    assert again is not None and again["deploymentId"] == first["deploymentId"]
    assert "started" not in again
    assert (await _state(ctx, first["deploymentId"]))[0] == Status.ACCEPTED.value


async def test_a_retried_claim_whose_key_leased_nothing_claims_as_usual(ctx: Context) -> None:
    await _queued(ctx, "net", "db")
    first = await runs.claim(ctx, RUNNER, SLOT, 0, START, key="k1")
    assert first is not None

    other = await runs.claim(ctx, RUNNER, "slot-1", 0, START, key="k1", retried=True)  # another runner's key
    fresh = await runs.claim(ctx, RUNNER, SLOT, 0, START, key="k2", retried=True)  # the first attempt got nothing

    assert other is not None and fresh is None  # one deployment left: the other slot got it
    assert other["deploymentId"] != first["deploymentId"]


async def test_a_claim_that_is_not_a_retry_never_gets_its_key_s_deployment_again(ctx: Context) -> None:
    await _queued(ctx, "net", "db")
    first = await runs.claim(ctx, RUNNER, SLOT, 0, START, key="k1")
    second = await runs.claim(ctx, RUNNER, SLOT, 0, START, key="k1")  # a runner reusing a key: new work
    assert first is not None and second is not None
    assert second["deploymentId"] != first["deploymentId"]


async def test_an_ended_deployment_is_not_handed_out_again(ctx: Context) -> None:
    await _queued(ctx, "net")
    first = await runs.claim(ctx, RUNNER, SLOT, 0, START, key="k1")
    assert first is not None
    await runs.finish(ctx, RUNNER, SLOT, first["deploymentId"], SUCCEEDED)

    assert await runs.claim(ctx, RUNNER, SLOT, 0, START, key="k1", retried=True) is None


async def test_a_retried_finish_is_answered_as_done_with_the_job_its_lost_answer_carried(ctx: Context) -> None:
    await _queued(ctx, "net", "db", "app")
    job = await runs.claim(ctx, RUNNER, SLOT, 0, START)
    assert job is not None
    finished, following = await runs.finish_and_claim(
        ctx, RUNNER, SLOT, job["deploymentId"], SUCCEEDED, start=START, key="n1"
    )
    assert following is not None

    again, redelivered = await runs.finish_and_claim(
        ctx, RUNNER, SLOT, job["deploymentId"], SUCCEEDED, start=START, key="n1", retried=True
    )

    assert (again.id, again.status) == (finished.id, Status.SUCCEEDED.value)
    assert redelivered is not None and redelivered["deploymentId"] == following["deploymentId"]
    assert redelivered["deploymentToken"] != following["deploymentToken"]
    async with ctx.db.read() as conn:
        statuses = sorted((await conn.execute(sa.select(deployments.c.status))).scalars())
    assert statuses == ["not-started", "running", "succeeded"]  # the retry claimed nothing more


async def test_a_retried_finish_does_not_hide_a_deployment_that_ended_otherwise(ctx: Context) -> None:
    await _queued(ctx, "net")
    ctx.clock = lambda: 1_000.0
    job = await runs.claim(ctx, RUNNER, SLOT, 0, START)
    assert job is not None
    ctx.clock = lambda: 1_000.0 + ctx.lease_seconds + 1
    await queue.expire_leases(ctx)  # the runner was thought lost: failed, "runner lost"

    with pytest.raises(Conflict):  # its report of success must not be answered as applied
        await runs.finish(ctx, RUNNER, SLOT, job["deploymentId"], SUCCEEDED, retried=True)
    assert (await _state(ctx, job["deploymentId"]))[0] == Status.FAILED.value


async def test_a_finish_that_is_not_a_retry_still_refuses_an_ended_deployment(ctx: Context) -> None:
    await _queued(ctx, "net")
    job = await runs.claim(ctx, RUNNER, SLOT, 0, START)
    assert job is not None
    await runs.finish(ctx, RUNNER, SLOT, job["deploymentId"], SUCCEEDED)

    with pytest.raises(Conflict):
        await runs.finish(ctx, RUNNER, SLOT, job["deploymentId"], SUCCEEDED)
    assert (await runs.finish(ctx, RUNNER, SLOT, job["deploymentId"], SUCCEEDED, retried=True)).status == "succeeded"


async def _until_waiting(ctx: Context, count: int) -> None:
    for _ in range(1000):
        if len(ctx.claims.pending) >= count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{count} claimers never waited")


async def test_a_retried_claim_takes_the_place_of_its_earlier_attempt_still_waiting(ctx: Context) -> None:
    """A proxy that gives up on a long poll leaves it waiting on the server: it must not take a job now."""
    await make_stack(ctx, ORG, "net")
    earlier = asyncio.create_task(runs.claim(ctx, RUNNER, SLOT, 30, START, key="k1"))
    other = asyncio.create_task(runs.claim(ctx, RUNNER, "slot-1", 30, START, key="k1"))  # another runner's
    await _until_waiting(ctx, 2)

    retry = asyncio.create_task(runs.claim(ctx, RUNNER, SLOT, 30, START, key="k1", retried=True))

    assert await asyncio.wait_for(earlier, 5) is None  # withdrawn at once, not after its 30 s
    assert not other.done()
    await enqueue(ctx, ORG, "net")
    done, _ = await asyncio.wait({retry, other}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    [winner] = done
    job = winner.result()
    assert job is not None and job["project"] == "net"
    for task in (retry, other):
        task.cancel()
    await asyncio.gather(retry, other, return_exceptions=True)


async def test_a_deployment_token_stops_working_when_its_deployment_finishes(ctx: Context) -> None:
    await _queued(ctx, "net")
    job = await runs.claim(ctx, RUNNER, SLOT, 0, START)
    assert job is not None
    token = f"token {job['deploymentToken']}"
    assert (await tokens.authenticate(ctx, token)).kind is TokenKind.DEPLOYMENT  # a step reads outputs
    await runs.finish(ctx, RUNNER, SLOT, job["deploymentId"], SUCCEEDED)
    with pytest.raises(Unauthenticated):  # at once, not once an auth cache entry runs out
        await tokens.authenticate(ctx, token)
