"""The deployment queue as runners see it: claim, start, heartbeat, finish; lease expiry.

All transitions of a claimed deployment go through here, each in one transaction with its events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackcascade.domain.deployments import ACTIVE, Operation, Status, check_transition, event_kinds_for_finish
from stackcascade.domain.errors import Conflict, NotFound
from stackcascade.services import cascades
from stackcascade.services.context import Context
from stackcascade.services.queueing import event_payload
from stackcascade.store import deployments as rows
from stackcascade.store import events, pipelined, runs
from stackcascade.store.schema import tokens

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection

_ACTIVE = tuple(s.value for s in ACTIVE)
DELETE_TOKENS = tokens.delete().where(tokens.c.deployment_id == sa.bindparam("b_deployment_id"))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    lease_expires_at: float
    cancel_requested: bool


async def _emit(conn: AsyncConnection, row: Any, kinds: Iterable[str], now: float, **extra: Any) -> None:
    """Events of ``row``, one per kind, in one statement."""
    await events.append_all(conn, [_event(row, kind, now, **extra) for kind in kinds])


def _event(row: Any, kind: str, now: float, **extra: Any) -> dict[str, Any]:
    return {
        "org": row.org,
        "kind": kind,
        "payload": event_payload(row, row.org, row.project, row.stack, **extra),
        "created_at": now,
        "stack_id": row.stack_id,
        "deployment_id": row.id,
    }


async def claim(ctx: Context, runner_id: str) -> Any | None:
    """Lease the head-of-line deployment to ``runner_id``; None when nothing is eligible."""
    async with ctx.db.write() as conn:
        return await rows.claim(conn, runner_id=runner_id, lease_seconds=ctx.lease_seconds, now=ctx.now)


async def owned(conn: AsyncConnection, deployment_id: str, runner_id: str) -> Any:
    """The deployment's row (without its documents: ``rows.get_state``), if ``runner_id`` holds its lease."""
    row = await rows.get_state(conn, deployment_id)
    if row is None:
        raise NotFound(f"deployment {deployment_id} not found")
    if row.runner_id != runner_id or row.status not in _ACTIVE:
        raise Conflict(f"deployment {deployment_id} is not leased to runner {runner_id!r} (it is {row.status})")
    return row


async def start(ctx: Context, deployment_id: str, runner_id: str, steps: list[runs.StepUpdate] | None = None) -> Any:
    """accepted -> running, with the first step updates in the same transaction (one round trip)."""
    async with ctx.db.write() as conn:
        row = await owned(conn, deployment_id, runner_id)
        return await start_in(conn, row, steps or [], ctx.now())


async def start_in(conn: AsyncConnection, row: Any, steps: list[runs.StepUpdate], now: float) -> Any:
    """Start ``row`` (accepted -> running) inside the caller's transaction, with the first step updates."""
    await runs.apply_steps(conn, row.id, steps, now)
    check_transition(Status(row.status), Status.RUNNING)
    await rows.update(
        conn, row.id, (Status.ACCEPTED.value,), status=Status.RUNNING.value, started_at=now, modified_at=now
    )
    started = await rows.get(conn, row.id)
    await _emit(conn, started, ["deployment_started"], now)
    return started


async def started_in(conn: AsyncConnection, started: list[tuple[Any, list[runs.StepUpdate]]], now: float) -> None:
    """The first step updates and the events of deployments their claim started (no steps stored yet)."""
    await runs.insert_first_steps(conn, [(row.id, steps) for row, steps in started], now)
    await events.append_all(conn, [_event(row, "deployment_started", now) for row, _ in started])


async def heartbeat(ctx: Context, deployment_id: str, runner_id: str) -> Heartbeat:
    now = ctx.now()
    async with ctx.db.write() as conn:
        row = await owned(conn, deployment_id, runner_id)
        expires = now + ctx.lease_seconds
        await rows.update(conn, deployment_id, _ACTIVE, lease_expires_at=expires)
        return Heartbeat(expires, bool(row.cancel_requested))


async def finish_in(
    conn: AsyncConnection,
    row: Any,
    status: Status,
    reason: str | None,
    now: float,
    *,
    values: dict[str, Any] | None = None,
    **extra: Any,
) -> Any:
    """Finish ``row`` inside the caller's transaction: status, events, superseded queue entries.

    ``values``: more columns to set in the same statement; ``extra``: more fields for the events.
    """
    check_transition(Status(row.status), status)
    changes = {
        "status": status.value,
        "reason": reason,
        "finished_at": now,
        "modified_at": now,
        "lease_expires_at": None,
        **(values or {}),
    }
    # Everything up to the cascade's lock goes out together (one round trip on PostgreSQL); nothing of it
    # is committed if the compare-and-set finds the deployment ended by another transaction meanwhile.
    ended = await rows.submit_update(conn, row.id, _ACTIVE, **changes)
    if status is Status.FAILED:
        await runs.fail_running_steps(conn, row.id, now)
    await pipelined.send(conn, DELETE_TOKENS, {"b_deployment_id": row.id})  # the deployment token dies with it
    finished = SimpleNamespace(**{**row._asdict(), **changes})  # the row as it now is, without reading it
    await _emit(conn, finished, event_kinds_for_finish(Operation(row.operation), status), now, **extra)
    queued_of_stack = await rows.submit_queued_of_stack(conn, row.stack_id)
    member = f"{row.project}/{row.stack}"
    sent = await cascades.send_reads(conn, row.cascade_id, member) if row.cascade_id else None
    if not (await ended.result()).rowcount:  # PostgreSQL: another transaction ended it
        raise Conflict(f"deployment {row.id} is no longer {row.status}: it ended meanwhile")
    await rows.skip_superseded(conn, row.stack_id, now=now, queued_of_stack=queued_of_stack)
    if row.cascade_id:  # a member finished: its cascade moves on in the same transaction
        await cascades.advance_in(conn, row.cascade_id, now, finished=member, sent=sent)
    return finished


async def finish(ctx: Context, deployment_id: str, runner_id: str, status: Status, reason: str | None = None) -> Any:
    async with ctx.db.write() as conn:
        row = await owned(conn, deployment_id, runner_id)
        finished = await finish_in(conn, row, status, reason, ctx.now())
    ctx.work.notify()
    return finished


async def expire_leases(ctx: Context) -> list[Any]:
    """Fail every deployment whose runner stopped renewing its lease (reason ``runner lost``).

    It is never silently re-queued: the work may have partly happened.
    """
    now = ctx.now()
    async with ctx.db.write() as conn:
        lost = [
            await finish_in(conn, row, Status.FAILED, "runner lost", now)
            for row in await rows.expired_leases(conn, now=now)
        ]
    if lost:
        ctx.work.notify()
    return lost
