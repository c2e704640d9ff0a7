"""What runners report about a deployment: steps, log lines, outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackcascade.store.schema import deployment_logs, deployment_steps, deployments, stacks

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection

TRUNCATION_SEQ = 2**31 - 1  # the marker line sorts after every real line of its step


@dataclass(frozen=True, slots=True)
class LogLine:
    step: int
    seq: int
    line: str
    timestamp: float


@dataclass(frozen=True, slots=True)
class StepUpdate:
    index: int
    name: str
    status: str


async def apply_steps(conn: AsyncConnection, deployment_id: str, updates: list[StepUpdate], now: float) -> None:
    for update in updates:
        await upsert_step(conn, deployment_id, update.index, update.name, update.status, now)


async def upsert_step(conn: AsyncConnection, deployment_id: str, idx: int, name: str, status: str, now: float) -> None:
    current = (
        await conn.execute(
            sa.select(deployment_steps).where(
                deployment_steps.c.deployment_id == deployment_id, deployment_steps.c.idx == idx
            )
        )
    ).first()
    started = now if status == "running" else None
    finished = now if status in {"succeeded", "failed"} else None
    if current is None:
        await conn.execute(
            deployment_steps.insert().values(
                deployment_id=deployment_id,
                idx=idx,
                name=name,
                status=status,
                started_at=started or (now if finished else None),
                finished_at=finished,
            )
        )
        return
    values: dict[str, Any] = {"status": status, "name": name}
    if started and current.started_at is None:
        values["started_at"] = started
    if finished:
        values["finished_at"] = finished
        if current.started_at is None:
            values["started_at"] = finished
    await conn.execute(
        deployment_steps.update()
        .where(deployment_steps.c.deployment_id == deployment_id, deployment_steps.c.idx == idx)
        .values(**values)
    )


async def steps(conn: AsyncConnection, deployment_id: str) -> list[sa.Row[Any]]:
    query = (
        sa.select(deployment_steps)
        .where(deployment_steps.c.deployment_id == deployment_id)
        .order_by(deployment_steps.c.idx)
    )
    return list((await conn.execute(query)).all())


async def fail_running_steps(conn: AsyncConnection, deployment_id: str, now: float) -> None:
    await conn.execute(
        deployment_steps.update()
        .where(deployment_steps.c.deployment_id == deployment_id, deployment_steps.c.status == "running")
        .values(status="failed", finished_at=now)
    )


async def append_logs(
    conn: AsyncConnection, deployment_id: str, lines: list[LogLine], *, max_bytes: int, now: float
) -> None:
    """Store new lines once (a retried batch is ignored) and stop at ``max_bytes`` with a marker line."""
    if not lines:
        return
    state = (
        await conn.execute(
            sa.select(deployments.c.log_bytes, deployments.c.log_truncated).where(deployments.c.id == deployment_id)
        )
    ).one()
    if state.log_truncated:
        return
    known = {
        (r.step, r.seq)
        for r in (
            await conn.execute(
                sa.select(deployment_logs.c.step, deployment_logs.c.seq).where(
                    deployment_logs.c.deployment_id == deployment_id,
                    deployment_logs.c.seq.in_({line.seq for line in lines}),
                )
            )
        ).all()
    }
    budget = max_bytes - int(state.log_bytes)
    rows: list[dict[str, Any]] = []
    truncated_at: LogLine | None = None
    used = 0
    for line in lines:
        if (line.step, line.seq) in known:
            continue
        known.add((line.step, line.seq))
        size = len(line.line.encode())
        if used + size > budget:
            truncated_at = line
            break
        used += size
        rows.append(
            {
                "deployment_id": deployment_id,
                "step": line.step,
                "seq": line.seq,
                "line": line.line,
                "created_at": line.timestamp,
            }
        )
    if truncated_at is not None:
        rows.append(
            {
                "deployment_id": deployment_id,
                "step": truncated_at.step,
                "seq": TRUNCATION_SEQ,
                "line": f"[log truncated: this deployment's log reached its limit of {max_bytes} bytes]",
                "created_at": now,
            }
        )
    if rows:
        await conn.execute(deployment_logs.insert().values(rows))
    await conn.execute(
        deployments.update()
        .where(deployments.c.id == deployment_id)
        .values(log_bytes=deployments.c.log_bytes + used, log_truncated=truncated_at is not None)
    )


async def logs_after(conn: AsyncConnection, deployment_id: str, after_id: int, limit: int) -> list[sa.Row[Any]]:
    query = (
        sa.select(deployment_logs.c.id, deployment_logs.c.step, deployment_logs.c.line, deployment_logs.c.created_at)
        .where(deployment_logs.c.deployment_id == deployment_id, deployment_logs.c.id > after_id)
        .order_by(deployment_logs.c.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).all())


async def logs_of_step(
    conn: AsyncConnection, deployment_id: str, step: int, offset: int, limit: int
) -> list[sa.Row[Any]]:
    query = (
        sa.select(deployment_logs.c.line, deployment_logs.c.created_at)
        .where(deployment_logs.c.deployment_id == deployment_id, deployment_logs.c.step == step)
        .order_by(deployment_logs.c.seq)
        .offset(offset)
        .limit(limit)
    )
    return list((await conn.execute(query)).all())


async def set_stack_outputs(conn: AsyncConnection, stack_id: str, outputs: dict[str, Any]) -> None:
    await conn.execute(stacks.update().where(stacks.c.id == stack_id).values(outputs=outputs))
