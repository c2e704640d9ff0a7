"""The events outbox: appended in the transaction of the change that causes the event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackcascade.store.schema import events

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection


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
    await conn.execute(
        events.insert().values(
            org=org, kind=kind, payload=payload, created_at=now, stack_id=stack_id, deployment_id=deployment_id
        )
    )


async def list_after(conn: AsyncConnection, org: str | None, after_id: int, limit: int) -> list[sa.Row[Any]]:
    query = sa.select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
    if org is not None:
        query = query.where(events.c.org == org)
    return list((await conn.execute(query)).all())
