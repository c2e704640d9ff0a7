"""The events outbox: appended in the transaction of the change that causes the event."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from stackcascade.store.pipelined import send
from stackcascade.store.schema import events

# Set when the current write transaction appended an event, so ``Database.write`` can wake the
# webhook dispatcher once the transaction has committed (never before: no event for a rollback).
appended_in_transaction: ContextVar[bool] = ContextVar("appended_in_transaction", default=False)

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection

_INSERT = events.insert()  # built once: building an insert anew costs more than SQLite takes to run it


async def append(
    conn: AsyncConnection,
    *,
    org: str,
    kind: str,
    payload: dict[str, Any],
    now: float,
    stack_id: str | None = None,
    deployment_id: str | None = None,
) -> None:
    values = {
        "org": org,
        "kind": kind,
        "payload": payload,
        "created_at": now,
        "stack_id": stack_id,
        "deployment_id": deployment_id,
    }
    await send(conn, _INSERT, values)
    appended_in_transaction.set(True)


async def append_all(conn: AsyncConnection, values: list[dict[str, Any]]) -> None:
    """Several events in one statement (each ``values`` as ``append`` takes them)."""
    if values:
        await send(conn, _INSERT, [{"stack_id": None, "deployment_id": None, **item} for item in values])
        appended_in_transaction.set(True)
