"""Queue semantics in the database: one running per stack, FIFO, head-of-line, limits, pause, leases."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from stackcascade.domain.deployments import Status
from stackcascade.domain.errors import Conflict
from stackcascade.services import deployments, org_settings, queue
from stackcascade.services.context import Context
from stackcascade.store import deployments as deployment_rows
from stackcascade.store.schema import deployments as deployments_table
from stackcascade.store.schema import events
from tests.services.helpers import ADMIN, make_stack
from tests.services.helpers import queue as enqueue

ORG = "acme"


async def _status(ctx: Context, deployment_id: str) -> tuple[str, str | None]:
    async with ctx.db.read() as conn:
        row = (
            await conn.execute(
                sa.select(deployments_table.c.status, deployments_table.c.reason).where(
                    deployments_table.c.id == deployment_id
                )
            )
        ).one()
    return row.status, row.reason


async def _claim_and_finish(ctx: Context, runner: str = "r1", status: Status = Status.SUCCEEDED) -> Any:
    row = await queue.claim(ctx, runner)
    assert row is not None
    await queue.start(ctx, row.id, runner)
    return await queue.finish(ctx, row.id, runner, status)


async def test_one_stack_runs_one_deployment_at_a_time_in_fifo_order(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    queued = [await enqueue(ctx, ORG, "net") for _ in range(3)]
    first = await queue.claim(ctx, "r1")
    assert first is not None and first.id == queued[0].id and first.status == "accepted"
    assert await queue.claim(ctx, "r2") is None, "the stack is busy, nothing else is eligible"
    await queue.start(ctx, first.id, "r1")
    await queue.finish(ctx, first.id, "r1", Status.SUCCEEDED)
    second = await queue.claim(ctx, "r2")
    assert second is not None and second.version == 2


async def test_head_of_line_lets_other_stacks_pass_a_busy_one(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    await make_stack(ctx, ORG, "db")
    a1 = await enqueue(ctx, ORG, "net")
    await enqueue(ctx, ORG, "net")
    b1 = await enqueue(ctx, ORG, "db")
    claimed = [await queue.claim(ctx, f"r{i}") for i in range(3)]
    assert [c.id if c else None for c in claimed] == [a1.id, b1.id, None]


async def test_org_concurrency_limit_holds_back_further_claims(ctx: Context) -> None:
    await org_settings.update(ctx, ADMIN, ORG, {"concurrency": 2})
    for project in ("a", "b", "c"):
        await make_stack(ctx, ORG, project)
        await enqueue(ctx, ORG, project)
    first, second = await queue.claim(ctx, "r1"), await queue.claim(ctx, "r2")
    assert first is not None and second is not None
    assert await queue.claim(ctx, "r3") is None
    await queue.start(ctx, first.id, "r1")
    await queue.finish(ctx, first.id, "r1", Status.FAILED, "boom")
    third = await queue.claim(ctx, "r3")
    assert third is not None and third.project == "c"


async def test_concurrency_limit_of_one_org_does_not_hold_back_another(ctx: Context) -> None:
    await org_settings.update(ctx, ADMIN, "small", {"concurrency": 1})
    for project in ("a", "b"):
        await make_stack(ctx, "small", project)
        await enqueue(ctx, "small", project)
    await make_stack(ctx, "other", "x")
    await enqueue(ctx, "other", "x")
    claimed = [await queue.claim(ctx, f"r{i}") for i in range(3)]
    assert [(c.org, c.project) if c else None for c in claimed] == [("small", "a"), ("other", "x"), None]


async def test_one_claim_for_several_runners_keeps_head_of_line_and_every_orgs_limit(ctx: Context) -> None:
    await org_settings.update(ctx, ADMIN, "small", {"concurrency": 1})
    for project in ("a", "b"):
        await make_stack(ctx, "small", project)
        await enqueue(ctx, "small", project)
    await make_stack(ctx, ORG, "net")
    await make_stack(ctx, ORG, "db")
    first_net = await enqueue(ctx, ORG, "net")
    await enqueue(ctx, ORG, "net")  # waits behind the first on its stack
    db = await enqueue(ctx, ORG, "db")
    runners = [f"r{i}" for i in range(6)]
    async with ctx.db.write() as conn:
        claimed = await deployment_rows.claim_many(conn, runner_ids=runners, lease_seconds=30, now=ctx.now())
    by_runner = {row.runner_id: (row.org, row.project, row.id) for row in claimed}
    assert by_runner == {  # the oldest org's queue first; "small" lets one through; one per stack
        "r0": ("small", "a", by_runner["r0"][2]),
        "r1": (ORG, "net", first_net.id),
        "r2": (ORG, "db", db.id),
    }
    assert all(row.status == "accepted" for row in claimed)


async def test_paused_stack_holds_its_queue_until_resumed(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    await make_stack(ctx, ORG, "db")
    await enqueue(ctx, ORG, "net")
    db = await enqueue(ctx, ORG, "db")
    await deployments.set_stack_paused(ctx, ADMIN, ORG, "net", "prod", True)
    only = await queue.claim(ctx, "r1")
    assert only is not None and only.id == db.id
    assert await queue.claim(ctx, "r2") is None
    await deployments.set_stack_paused(ctx, ADMIN, ORG, "net", "prod", False)
    resumed = await queue.claim(ctx, "r2")
    assert resumed is not None and resumed.project == "net"


async def test_paused_org_holds_every_stack_but_running_work_finishes(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    await enqueue(ctx, ORG, "net")
    await enqueue(ctx, ORG, "net")
    running = await queue.claim(ctx, "r1")
    assert running is not None
    await queue.start(ctx, running.id, "r1")
    await deployments.set_org_paused(ctx, ADMIN, ORG, True)
    await queue.finish(ctx, running.id, "r1", Status.SUCCEEDED)
    assert await queue.claim(ctx, "r1") is None
    await deployments.set_org_paused(ctx, ADMIN, ORG, False)
    assert await queue.claim(ctx, "r1") is not None


async def test_skip_intermediate_keeps_only_the_newest_queued_when_the_running_one_finishes(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    running = await enqueue(ctx, ORG, "net")
    claimed = await queue.claim(ctx, "r1")
    assert claimed is not None and claimed.id == running.id
    middle = [await enqueue(ctx, ORG, "net", skip_intermediate=True) for _ in range(2)]
    newest = await enqueue(ctx, ORG, "net", skip_intermediate=True)
    await queue.start(ctx, running.id, "r1")
    await queue.finish(ctx, running.id, "r1", Status.SUCCEEDED)
    for item in middle:
        status, reason = await _status(ctx, item.id)
        assert status == "skipped"
        assert reason is not None and f"superseded by version {newest.version}" in reason
    nxt = await queue.claim(ctx, "r1")
    assert nxt is not None and nxt.id == newest.id


async def test_skip_intermediate_applies_per_operation(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    update = await enqueue(ctx, ORG, "net", operation="update")
    preview = await enqueue(ctx, ORG, "net", operation="preview", skip_intermediate=True)
    first = await queue.claim(ctx, "r1")
    assert first is not None and first.id == update.id, "a newer preview does not supersede an update"
    assert (await _status(ctx, preview.id))[0] == "not-started"


async def test_skip_intermediate_at_claim_time_when_nothing_was_running(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    await deployments.set_stack_paused(ctx, ADMIN, ORG, "net", "prod", True)
    old = await enqueue(ctx, ORG, "net", skip_intermediate=True)
    new = await enqueue(ctx, ORG, "net", skip_intermediate=True)
    await deployments.set_stack_paused(ctx, ADMIN, ORG, "net", "prod", False)
    claimed = await queue.claim(ctx, "r1")
    assert claimed is not None and claimed.id == new.id
    assert (await _status(ctx, old.id))[0] == "skipped"


async def test_expired_lease_fails_the_deployment_as_runner_lost_and_never_requeues(ctx: Context) -> None:
    now = [1_000.0]
    ctx.clock = lambda: now[0]
    await make_stack(ctx, ORG, "net")
    queued = await enqueue(ctx, ORG, "net")
    claimed = await queue.claim(ctx, "r1")
    assert claimed is not None and claimed.lease_expires_at == pytest.approx(1_000 + ctx.lease_seconds)
    await queue.start(ctx, claimed.id, "r1")
    now[0] += ctx.lease_seconds - 1
    assert await queue.expire_leases(ctx) == []
    now[0] += 2
    lost = await queue.expire_leases(ctx)
    assert [row.id for row in lost] == [queued.id]
    assert await _status(ctx, queued.id) == ("failed", "runner lost")
    assert await queue.claim(ctx, "r2") is None
    async with ctx.db.read() as conn:
        kinds = (
            (
                await conn.execute(
                    sa.select(events.c.kind).where(events.c.deployment_id == queued.id).order_by(events.c.id)
                )
            )
            .scalars()
            .all()
        )
    assert kinds == ["deployment_queued", "deployment_started", "deployment_failed", "update_failed"]


async def test_heartbeat_extends_the_lease_and_reports_cancellation(ctx: Context) -> None:
    now = [5_000.0]
    ctx.clock = lambda: now[0]
    await make_stack(ctx, ORG, "net")
    queued = await enqueue(ctx, ORG, "net")
    claimed = await queue.claim(ctx, "r1")
    assert claimed is not None
    now[0] += ctx.lease_seconds - 5
    beat = await queue.heartbeat(ctx, claimed.id, "r1")
    assert beat.cancel_requested is False and beat.lease_expires_at == pytest.approx(now[0] + ctx.lease_seconds)
    now[0] += 10
    assert await queue.expire_leases(ctx) == [], "the heartbeat moved the deadline"
    await deployments.cancel(ctx, ADMIN, ORG, "net", "prod", queued.id)
    assert (await queue.heartbeat(ctx, claimed.id, "r1")).cancel_requested is True


async def test_only_the_lease_holder_may_report_on_a_deployment(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    await enqueue(ctx, ORG, "net")
    claimed = await queue.claim(ctx, "r1")
    assert claimed is not None
    with pytest.raises(Conflict, match="not leased to runner 'intruder'"):
        await queue.heartbeat(ctx, claimed.id, "intruder")
    with pytest.raises(Conflict):
        await queue.finish(ctx, claimed.id, "intruder", Status.SUCCEEDED)


async def test_a_finish_that_finds_the_deployment_ended_meanwhile_changes_nothing(ctx: Context) -> None:
    """On PostgreSQL another transaction (the lease sweeper) can end the deployment between the finish's
    read and its write: the finish must then refuse, not emit events for a change it did not make."""
    await make_stack(ctx, ORG, "net")
    await enqueue(ctx, ORG, "net")
    claimed = await queue.claim(ctx, "r1")
    assert claimed is not None
    await queue.start(ctx, claimed.id, "r1")
    with pytest.raises(Conflict, match="it ended meanwhile"):
        async with ctx.db.write() as conn:
            row = await queue.owned(conn, claimed.id, "r1")
            await conn.execute(  # what the other transaction committed
                deployments_table.update().where(deployments_table.c.id == claimed.id).values(status="failed")
            )
            await queue.finish_in(conn, row, Status.SUCCEEDED, None, ctx.now())
    assert await _status(ctx, claimed.id) == ("running", None)  # rolled back as a whole
    async with ctx.db.read() as conn:
        kinds = (await conn.execute(sa.select(events.c.kind).where(events.c.deployment_id == claimed.id))).scalars()
        assert "deployment_succeeded" not in set(kinds)


async def test_finish_emits_deployment_and_operation_events_in_order(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    queued = await enqueue(ctx, ORG, "net", operation="preview")
    await _claim_and_finish(ctx)
    async with ctx.db.read() as conn:
        kinds = (
            (
                await conn.execute(
                    sa.select(events.c.kind).where(events.c.deployment_id == queued.id).order_by(events.c.id)
                )
            )
            .scalars()
            .all()
        )
    assert kinds == ["deployment_queued", "deployment_started", "deployment_succeeded", "preview_succeeded"]


async def test_database_refuses_a_second_active_deployment_on_a_stack(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    first, second = await enqueue(ctx, ORG, "net"), await enqueue(ctx, ORG, "net")
    async with ctx.db.write() as conn:
        await conn.execute(
            deployments_table.update().where(deployments_table.c.id == first.id).values(status="running")
        )
    with pytest.raises(IntegrityError):
        async with ctx.db.write() as conn:
            await conn.execute(
                deployments_table.update().where(deployments_table.c.id == second.id).values(status="accepted")
            )


async def test_an_event_is_not_kept_when_its_transaction_rolls_back(ctx: Context) -> None:
    from stackcascade.store import events as outbox

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with ctx.db.write() as conn:
            await outbox.append(conn, org=ORG, kind="deployment_queued", payload={}, now=ctx.now())
            raise Boom
    async with ctx.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(events)) == 0


async def test_a_claimer_waits_for_a_busy_orgs_lock_instead_of_giving_up(ctx: Context) -> None:
    """PostgreSQL: while one claimer holds the only busy org's row, another waits for it and then claims.

    Skipping the locked org (SKIP LOCKED alone) would answer "nothing to do" although work is queued,
    and runners would then start one deployment per wake-up.
    """
    if not ctx.db.is_postgres:
        pytest.skip("SQLite has one writer at a time: claimers never see each other's locks")
    import asyncio

    from stackcascade.store import deployments as rows

    for project in ("net", "db"):
        await make_stack(ctx, ORG, project)
        await enqueue(ctx, ORG, project)
    first_claimed = asyncio.Event()
    release_first = asyncio.Event()

    async def first_claimer() -> Any:
        async with ctx.db.write() as conn:
            row = await rows.claim(conn, runner_id="r1", lease_seconds=30, now=ctx.now())
            first_claimed.set()
            await release_first.wait()  # keep the org row locked until the second claimer waits on it
            return row

    first = asyncio.create_task(first_claimer())
    await first_claimed.wait()
    second = asyncio.create_task(queue.claim(ctx, "r2"))
    await _until_waiting_for_a_lock(ctx, second)
    release_first.set()
    claimed = [await first, await second]
    assert all(row is not None for row in claimed)
    assert len({row.id for row in claimed if row is not None}) == 2  # both stacks' deployments


async def test_a_claim_is_not_dated_before_the_commit_that_queued_its_deployment(ctx: Context) -> None:
    """PostgreSQL: a claim that began, and waited for the org's lock, before the deployment it gets was
    queued is dated after that commit: a member never shows as started before its upstream finished."""
    if not ctx.db.is_postgres:
        pytest.skip("SQLite's claim begins with BEGIN IMMEDIATE, after every earlier commit")
    import asyncio

    from stackcascade.domain.deployments import Operation
    from stackcascade.domain.roles import Principal, TokenKind
    from stackcascade.services import runs
    from stackcascade.services.queueing import queue_in
    from stackcascade.store import stacks as stack_rows
    from stackcascade.store.runs import StepUpdate
    from tests.services.helpers import SOURCE

    clock = [100.0]
    ctx.clock = lambda: clock[0]
    await make_stack(ctx, ORG, "net")
    late = await make_stack(ctx, ORG, "db")
    await enqueue(ctx, ORG, "net")
    holding = asyncio.Event()
    commit = asyncio.Event()

    async def finish_like() -> None:
        """Holds the org's row (a claim of net) while it queues db, and commits at time 200."""
        async with ctx.db.write() as conn:
            await deployment_rows.claim(conn, runner_id="r1", lease_seconds=30, now=ctx.now())
            stack_row = await stack_rows.get_with_settings(conn, late.id)
            await queue_in(
                conn,
                stack_row,
                Operation.UPDATE,
                dict(SOURCE),
                inherit=False,
                initiator="t",
                requested_by="t",
                now=150.0,
            )
            holding.set()
            await commit.wait()
            clock[0] = 200.0

    first = asyncio.create_task(finish_like())
    await holding.wait()
    runner = Principal(token_id="runner-token", name="pool", kind=TokenKind.RUNNER)
    start = [StepUpdate(0, "source", "running")]
    second = asyncio.create_task(runs.claim(ctx, runner, "r2", 10, start=start))  # begins at time 100
    await _until_waiting_for_a_lock(ctx, second)
    commit.set()
    await first
    job = await asyncio.wait_for(second, 10)
    assert job is not None and job["project"] == "db"
    async with ctx.db.read() as conn:
        started = await conn.scalar(
            sa.select(deployments_table.c.started_at).where(deployments_table.c.id == job["deploymentId"])
        )
    assert started == 200.0  # read when the claim found it, not when its transaction began (100)


async def _until_waiting_for_a_lock(ctx: Context, claimer: Any) -> None:
    """PostgreSQL: until (bounded) a transaction of this database waits for a row lock, ``claimer`` still
    running: a claimer that gave up instead of waiting fails here."""
    import asyncio

    waiting = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    for _ in range(500):
        async with ctx.db.read() as conn:
            if await conn.scalar(waiting):
                return
        assert not claimer.done(), "the claimer gave up instead of waiting for the org's lock"
        await asyncio.sleep(0.01)
    raise AssertionError("the claimer never waited for the org's lock")
