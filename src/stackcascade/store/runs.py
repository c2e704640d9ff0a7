"""What runners report about a deployment: steps, log lines, outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackcascade.store.pipelined import Answer, send, submit
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
    at: float | None = None  # when the runner saw the transition (epoch seconds); None: when it arrives


_TERMINAL_STEP = frozenset({"succeeded", "failed"})

# The statements of the runner protocol and the log readers are built once with bind parameters
# (named b_* where UPDATE reserves column names for SET): building a statement and its cache key
# anew costs several times what SQLite takes to run it.
_DEPLOYMENT = sa.bindparam("b_deployment_id")
_STEPS_AMONG = sa.select(deployment_steps).where(
    deployment_steps.c.deployment_id == _DEPLOYMENT,
    deployment_steps.c.idx.in_(sa.bindparam("b_indices", expanding=True)),
)
_INSERT_STEP = deployment_steps.insert()
_UPDATE_STEP = deployment_steps.update().where(  # SET: the parameters named like columns
    deployment_steps.c.deployment_id == _DEPLOYMENT, deployment_steps.c.idx == sa.bindparam("b_idx")
)
_STEPS = (
    sa.select(deployment_steps).where(deployment_steps.c.deployment_id == _DEPLOYMENT).order_by(deployment_steps.c.idx)
)
_FAIL_RUNNING = (
    deployment_steps.update()
    .where(deployment_steps.c.deployment_id == _DEPLOYMENT, deployment_steps.c.status == "running")
    .values(status="failed", finished_at=sa.bindparam("b_now", type_=sa.Double))
)
_LOG_STATE = sa.select(deployments.c.log_bytes, deployments.c.log_truncated).where(deployments.c.id == _DEPLOYMENT)
_KNOWN_LINES = sa.select(deployment_logs.c.step, deployment_logs.c.seq).where(
    deployment_logs.c.deployment_id == _DEPLOYMENT, deployment_logs.c.seq.in_(sa.bindparam("b_seqs", expanding=True))
)
_INSERT_LINE = deployment_logs.insert()
_COUNT_LOG_BYTES = (
    deployments.update()
    .where(deployments.c.id == _DEPLOYMENT)
    .values(
        log_bytes=deployments.c.log_bytes + sa.bindparam("b_used", type_=sa.Integer),
        log_truncated=sa.bindparam("b_truncated", type_=sa.Boolean),
    )
)
_LOGS_AFTER = (
    sa.select(deployment_logs.c.id, deployment_logs.c.step, deployment_logs.c.line, deployment_logs.c.created_at)
    .where(deployment_logs.c.deployment_id == _DEPLOYMENT, deployment_logs.c.id > sa.bindparam("b_after"))
    .order_by(deployment_logs.c.id)
    .limit(sa.bindparam("b_limit"))
)
_LOGS_OF_STEP = (
    sa.select(deployment_logs.c.line, deployment_logs.c.created_at)
    .where(deployment_logs.c.deployment_id == _DEPLOYMENT, deployment_logs.c.step == sa.bindparam("b_step"))
    .order_by(deployment_logs.c.seq)
    .offset(sa.bindparam("b_offset"))
    .limit(sa.bindparam("b_limit"))
)
_SET_STACK_OUTPUTS = stacks.update().where(stacks.c.id == sa.bindparam("b_stack_id"))


async def submit_steps_among(conn: AsyncConnection, deployment_id: str, updates: list[StepUpdate]) -> Answer | None:
    """The stored steps that ``updates`` touch, for ``apply_steps``: read with what follows."""
    if not updates:
        return None
    indices = sorted({update.index for update in updates})
    return await submit(conn, _STEPS_AMONG, {"b_deployment_id": deployment_id, "b_indices": indices})


async def apply_steps(
    conn: AsyncConnection,
    deployment_id: str,
    updates: list[StepUpdate],
    now: float,
    *,
    earliest: float | None = None,
    stored: Answer | None = None,
) -> None:
    """Apply step transitions in order: one read of the steps involved, then one write per step.

    A transition takes effect at its ``at`` (the runner's clock, so transitions sent together keep
    their own times), kept within ``[earliest, now]``; without ``at`` it takes effect ``now``. Running
    sets ``started_at`` once; succeeded/failed set ``finished_at`` (and ``started_at`` if never set).
    ``stored``: the read of ``submit_steps_among``, when the caller sent it already.
    """
    if not updates:
        return
    floor = now if earliest is None else min(earliest, now)
    where = {"b_deployment_id": deployment_id}
    if stored is None:
        stored = await submit_steps_among(conn, deployment_id, updates)
    assert stored is not None  # there are updates
    state, new = _transitions(updates, now, floor, {row.idx: row for row in (await stored.result()).all()})
    if new:
        await send(conn, _INSERT_STEP, [{"deployment_id": deployment_id, "idx": idx, **state[idx]} for idx in new])
    for idx, values in state.items():
        if idx not in new:
            await send(conn, _UPDATE_STEP, {**where, "b_idx": idx, **values})


async def insert_first_steps(conn: AsyncConnection, firsts: list[tuple[str, list[StepUpdate]]], now: float) -> None:
    """The first step transitions of deployments that have no steps yet (just claimed), in one insert."""
    rows: list[dict[str, Any]] = []
    for deployment_id, updates in firsts:
        state, _ = _transitions(updates, now, now, {})
        rows += [{"deployment_id": deployment_id, "idx": idx, **values} for idx, values in state.items()]
    if rows:
        await send(conn, _INSERT_STEP, rows)


def _transitions(
    updates: list[StepUpdate], now: float, floor: float, stored: dict[int, Any]
) -> tuple[dict[int, dict[str, Any]], list[int]]:
    """Each step's columns after ``updates``, and the steps not stored yet (``apply_steps``'s rules)."""
    state: dict[int, dict[str, Any]] = {}
    new: list[int] = []
    for update in updates:
        at = now if update.at is None else min(max(update.at, floor), now)
        current = state.get(update.index)
        if current is None:
            row = stored.get(update.index)
            if row is None:
                new.append(update.index)
                current = state[update.index] = {"started_at": None, "finished_at": None}
            else:
                current = state[update.index] = {"started_at": row.started_at, "finished_at": row.finished_at}
        current["name"] = update.name
        current["status"] = update.status
        if update.status == "running" and current["started_at"] is None:
            current["started_at"] = at
        if update.status in _TERMINAL_STEP:
            current["finished_at"] = at
            if current["started_at"] is None:
                current["started_at"] = at
    return state, new


async def steps(conn: AsyncConnection, deployment_id: str) -> list[sa.Row[Any]]:
    return list((await conn.execute(_STEPS, {"b_deployment_id": deployment_id})).all())


async def fail_running_steps(conn: AsyncConnection, deployment_id: str, now: float) -> None:
    await send(conn, _FAIL_RUNNING, {"b_deployment_id": deployment_id, "b_now": now})


async def submit_known_lines(conn: AsyncConnection, deployment_id: str, lines: list[LogLine]) -> Answer | None:
    """Which of ``lines`` are stored already, for ``append_logs``: read with what follows."""
    if not lines:
        return None
    seqs = sorted({line.seq for line in lines})
    return await submit(conn, _KNOWN_LINES, {"b_deployment_id": deployment_id, "b_seqs": seqs})


async def append_logs(
    conn: AsyncConnection,
    deployment_id: str,
    lines: list[LogLine],
    *,
    max_bytes: int,
    now: float,
    state: Any = None,
    stored: Answer | None = None,
) -> None:
    """Store new lines once (a retried batch is ignored) and stop at ``max_bytes`` with a marker line.

    ``state``: the deployment's row (``log_bytes``, ``log_truncated``) when this transaction already read it;
    ``stored``: the read of ``submit_known_lines``, when the caller sent it already.
    """
    if not lines:
        return
    where = {"b_deployment_id": deployment_id}
    if state is None:
        state = (await conn.execute(_LOG_STATE, where)).one()
    if state.log_truncated:
        return
    if stored is None:
        stored = await submit_known_lines(conn, deployment_id, lines)
    assert stored is not None  # there are lines
    known = {(r.step, r.seq) for r in (await stored.result()).all()}
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
        await send(conn, _INSERT_LINE, rows)
    await send(conn, _COUNT_LOG_BYTES, {**where, "b_used": used, "b_truncated": truncated_at is not None})


async def logs_after(conn: AsyncConnection, deployment_id: str, after_id: int, limit: int) -> list[sa.Row[Any]]:
    parameters = {"b_deployment_id": deployment_id, "b_after": after_id, "b_limit": limit}
    return list((await conn.execute(_LOGS_AFTER, parameters)).all())


async def logs_of_step(
    conn: AsyncConnection, deployment_id: str, step: int, offset: int, limit: int
) -> list[sa.Row[Any]]:
    parameters = {"b_deployment_id": deployment_id, "b_step": step, "b_offset": offset, "b_limit": limit}
    return list((await conn.execute(_LOGS_OF_STEP, parameters)).all())


async def set_stack_outputs(conn: AsyncConnection, stack_id: str, outputs: dict[str, Any], now: float) -> None:
    await send(conn, _SET_STACK_OUTPUTS, {"b_stack_id": stack_id, "outputs": outputs, "outputs_updated_at": now})
