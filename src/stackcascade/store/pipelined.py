"""Statements sent without waiting for the database's answer.

On PostgreSQL they go out at once in psycopg's pipeline mode, and their answers are read together, with
the next statement's or with the commit, in one round trip (``store/pg_direct``). On SQLite they run at
once, as every statement does.

* ``send``: a write whose rows, row count and errors the caller does not look at. An error still fails
  the transaction, but is raised by a later statement.
* ``submit``: a statement whose answer is read later, with ``await answer.result()``. Reads that do not
  depend on each other are submitted one after the other, then read: one round trip for all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection


async def send(conn: AsyncConnection, statement: Any, parameters: Any = None) -> None:
    """Execute ``statement`` on the store's connection (``db.InlineConnection`` or ``pg_direct``)."""
    await conn.enqueue(statement, parameters)  # type: ignore[attr-defined]


class Answer(Protocol):
    async def result(self) -> Any:
        """The statement's result (as ``execute`` returns it); ask once: its rows are not kept."""


async def submit(conn: AsyncConnection, statement: Any, parameters: Any = None) -> Answer:
    """Send ``statement`` now; its result comes from ``await answer.result()``."""
    answer: Answer = await conn.submit(statement, parameters)  # type: ignore[attr-defined]
    return answer
