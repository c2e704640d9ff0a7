"""Runner protocol 2 on the server: step times from the runner, steps with log appends, lines with finish."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from stackcascade.domain.deployments import Status
from stackcascade.domain.roles import Principal, TokenKind
from stackcascade.services import queue, runs
from stackcascade.services.context import Context
from stackcascade.store import runs as store_runs
from stackcascade.store.runs import LogLine, StepUpdate
from stackcascade.store.schema import deployment_logs, deployment_steps, events
from stackcascade.store.schema import deployments as deployments_table
from tests.services.helpers import ADMIN, make_stack
from tests.services.helpers import queue as enqueue

ORG = "acme"
RUNNER = Principal(token_id="runner-token", name="pool", kind=TokenKind.RUNNER)
SLOT = "slot-0"


async def _running(ctx: Context, now: list[float]) -> str:
    """A deployment claimed by RUNNER/SLOT and started at ``now[0]``, with its source step running."""
    ctx.clock = lambda: now[0]
    await make_stack(ctx, ORG, "net")
    await enqueue(ctx, ORG, "net")
    job = await runs.claim(ctx, RUNNER, SLOT, 0)
    assert job is not None and job["protocol"] == 3
    await queue.start(ctx, job["deploymentId"], runs.owner_of(RUNNER, SLOT), [StepUpdate(0, "source", "running")])
    return str(job["deploymentId"])


async def _steps(ctx: Context, deployment_id: str) -> list[tuple[Any, ...]]:
    async with ctx.db.read() as conn:
        query = (
            sa.select(
                deployment_steps.c.idx,
                deployment_steps.c.name,
                deployment_steps.c.status,
                deployment_steps.c.started_at,
                deployment_steps.c.finished_at,
            )
            .where(deployment_steps.c.deployment_id == deployment_id)
            .order_by(deployment_steps.c.idx)
        )
        return [tuple(row) for row in (await conn.execute(query)).all()]


async def _lines(ctx: Context, deployment_id: str) -> list[tuple[int, int, str]]:
    async with ctx.db.read() as conn:
        query = (
            sa.select(deployment_logs.c.step, deployment_logs.c.seq, deployment_logs.c.line)
            .where(deployment_logs.c.deployment_id == deployment_id)
            .order_by(deployment_logs.c.id)
        )
        return [tuple(row) for row in (await conn.execute(query)).all()]  # type: ignore[misc]


async def test_transitions_sent_together_keep_the_runners_times_within_the_run(ctx: Context) -> None:
    now = [1_000.0]
    deployment_id = await _running(ctx, now)
    now[0] = 1_010.0
    transitions = [
        StepUpdate(0, "source", "succeeded", at=1_002.0),
        StepUpdate(1, "pre-run", "running", at=1_002.0),
        StepUpdate(1, "pre-run", "succeeded", at=1_003.0),
        StepUpdate(2, "operation", "running", at=1_003.0),
        StepUpdate(2, "operation", "succeeded", at=990.0),  # a runner clock behind ours: not before the start
        StepUpdate(3, "outputs", "running", at=1_500.0),  # nor after now
        StepUpdate(3, "outputs", "succeeded"),  # no time: now
    ]
    await runs.append_logs(ctx, RUNNER, SLOT, deployment_id, [], transitions)
    assert await _steps(ctx, deployment_id) == [
        (0, "source", "succeeded", 1_000.0, 1_002.0),
        (1, "pre-run", "succeeded", 1_002.0, 1_003.0),
        (2, "operation", "succeeded", 1_003.0, 1_000.0),
        (3, "outputs", "succeeded", 1_010.0, 1_010.0),
    ]


async def test_finish_stores_its_steps_and_lines_in_the_same_transaction(ctx: Context) -> None:
    now = [2_000.0]
    deployment_id = await _running(ctx, now)
    await runs.append_logs(ctx, RUNNER, SLOT, deployment_id, [LogLine(0, 0, "copying", 2_000.5)])
    now[0] = 2_001.0
    lines = [LogLine(0, 0, "copying", 2_000.5), LogLine(2, 0, "hello", 2_000.8)]  # a retried line and a new one
    steps = [StepUpdate(0, "source", "succeeded", at=2_000.6), StepUpdate(2, "operation", "running", at=2_000.7)]
    result = runs.Result(Status.SUCCEEDED, outputs={"url": "https://x"})
    row = await runs.finish(
        ctx, RUNNER, SLOT, deployment_id, result, [*steps, StepUpdate(2, "operation", "succeeded")], lines
    )
    assert row.status == "succeeded"
    assert await _lines(ctx, deployment_id) == [(0, 0, "copying"), (2, 0, "hello")]
    assert await _steps(ctx, deployment_id) == [
        (0, "source", "succeeded", 2_000.0, 2_000.6),
        (2, "operation", "succeeded", 2_000.7, 2_001.0),
    ]
    async with ctx.db.read() as conn:
        stored = (
            await conn.execute(
                sa.select(deployments_table.c.log_bytes, deployments_table.c.outputs).where(
                    deployments_table.c.id == deployment_id
                )
            )
        ).one()
    assert stored.log_bytes == len("copying") + len("hello")
    assert stored.outputs == {"plain": {"url": "https://x"}, "sealed": {}}


async def test_lines_carried_by_finish_respect_the_log_limit(ctx: Context) -> None:
    now = [3_000.0]
    deployment_id = await _running(ctx, now)
    ctx.max_log_bytes = 10
    lines = [LogLine(0, seq, "12345", 3_000.0) for seq in range(3)]
    await runs.finish(ctx, RUNNER, SLOT, deployment_id, runs.Result(Status.FAILED, "boom"), [], lines)
    stored = await _lines(ctx, deployment_id)
    assert stored[:2] == [(0, 0, "12345"), (0, 1, "12345")]
    assert len(stored) == 3 and stored[2][2].startswith("[log truncated")
    assert [(s[0], s[2]) for s in await _steps(ctx, deployment_id)] == [(0, "failed")]


async def test_reports_need_the_lease(ctx: Context) -> None:
    now = [4_000.0]
    deployment_id = await _running(ctx, now)
    with pytest.raises(Exception, match="not leased"):
        await runs.append_logs(ctx, RUNNER, "another-slot", deployment_id, [], [StepUpdate(0, "source", "failed")])
    assert [(s[0], s[2]) for s in await _steps(ctx, deployment_id)] == [(0, "running")]


async def test_a_claim_can_start_the_deployment_in_the_same_transaction(ctx: Context) -> None:
    now = [5_000.0]
    ctx.clock = lambda: now[0]
    await make_stack(ctx, ORG, "net")
    queued = await enqueue(ctx, ORG, "net")
    job = await runs.claim(ctx, RUNNER, SLOT, 0, [StepUpdate(0, "source", "running")])
    assert job is not None and job["deploymentId"] == queued.id and job["started"] is True
    async with ctx.db.read() as conn:
        row = (
            await conn.execute(
                sa.select(deployments_table.c.status, deployments_table.c.started_at).where(
                    deployments_table.c.id == queued.id
                )
            )
        ).one()
        kinds = (
            (
                await conn.execute(
                    sa.select(events.c.kind).where(events.c.deployment_id == queued.id).order_by(events.c.id)
                )
            )
            .scalars()
            .all()
        )
    assert (row.status, row.started_at) == ("running", 5_000.0)
    assert kinds == ["deployment_queued", "deployment_started"]
    assert await _steps(ctx, queued.id) == [(0, "source", "running", 5_000.0, None)]


async def test_a_claim_without_start_leaves_the_deployment_accepted(ctx: Context) -> None:
    await make_stack(ctx, ORG, "net")
    queued = await enqueue(ctx, ORG, "net")
    job = await runs.claim(ctx, RUNNER, SLOT, 0)
    assert job is not None and "started" not in job
    async with ctx.db.read() as conn:
        status = await conn.scalar(sa.select(deployments_table.c.status).where(deployments_table.c.id == queued.id))
    assert status == "accepted"
    assert await _steps(ctx, queued.id) == []


async def test_log_lines_committed_while_they_are_read_come_with_their_steps_name(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL each statement of a read sees what was committed when it began: lines of a new step
    that commit between two of them must still be headed with the step's name, not ``step 1``."""
    now = [3_000.0]
    deployment_id = await _running(ctx, now)
    read_lines = store_runs.logs_after

    async def lines_after_a_commit(conn: Any, *args: Any) -> Any:
        steps = [StepUpdate(0, "source", "succeeded"), StepUpdate(1, "deploy", "running")]
        await runs.append_logs(ctx, RUNNER, SLOT, deployment_id, [LogLine(1, 0, "deploying", 3_000.5)], steps)
        return await read_lines(conn, *args)

    monkeypatch.setattr(store_runs, "logs_after", lines_after_a_commit)
    body = await runs.read_logs(
        ctx, ADMIN, ORG, "net", "prod", deployment_id, continuation=None, count=None, job=None, step=None, offset=None
    )
    headed = [(line["header"], line["line"]) for line in body["lines"]]
    assert all(header == "deploy" for header, _ in headed)  # SQLite reads one snapshot and may see none
    if ctx.db.is_postgres:
        assert headed == [("deploy", "deploying")]
