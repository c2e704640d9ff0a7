"""Writes whose result nobody reads: sent without waiting for the database's answer.

On PostgreSQL such a write goes out at once in psycopg's pipeline mode and its answer is read together
with the next statement's, or with the commit, in one round trip (``store/pg_direct``). On SQLite it
runs at once, as every statement does. Use it only for a write whose rows, row count and errors the
caller does not look at: an error still fails the transaction, but is raised by a later statement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection


async def send(conn: AsyncConnection, statement: Any, parameters: Any = None) -> None:
    """Execute ``statement`` on the store's connection (``db.InlineConnection`` or ``pg_direct``)."""
    await conn.enqueue(statement, parameters)  # type: ignore[attr-defined]
