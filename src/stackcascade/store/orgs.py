"""Organizations: created on first use, hold the pause flag and the concurrency limit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackcascade.store.db import insert_ignoring_duplicates
from stackcascade.store.schema import orgs

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection


async def ensure(conn: AsyncConnection, name: str, *, concurrency: int, now: float) -> None:
    """Create the org on first use; safe when several transactions do it at once."""
    row = {"name": name, "concurrency": concurrency, "paused": False, "created_at": now}
    await insert_ignoring_duplicates(conn, orgs, [row], ["name"])


async def get(conn: AsyncConnection, name: str) -> sa.Row[Any] | None:
    return (await conn.execute(sa.select(orgs).where(orgs.c.name == name))).first()


async def set_paused(conn: AsyncConnection, name: str, paused: bool) -> None:
    await conn.execute(orgs.update().where(orgs.c.name == name).values(paused=paused))


async def set_concurrency(conn: AsyncConnection, name: str, concurrency: int) -> None:
    await conn.execute(orgs.update().where(orgs.c.name == name).values(concurrency=concurrency))
