"""The database adapter: the one place where SQLite and PostgreSQL differ.

``write()`` opens a transaction that holds the write lock from its first statement (``BEGIN
IMMEDIATE`` on SQLite, through a single pooled writer connection so in-process writers queue in
asyncio instead of spinning in SQLite's busy handler). ``read()`` opens a snapshot for reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
)


def sqlite_url_for(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'cascade.db').resolve()}"


def _driver_url(url: str, *, asynchronous: bool) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite" if asynchronous else "sqlite+pysqlite")
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: use sqlite:/// or postgresql://"
    )


def _configure_sqlite(engine: AsyncEngine, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)


class Database:
    """Async engines for one database URL."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        async_url = _driver_url(url, asynchronous=True)
        self.dialect = async_url.get_backend_name()
        if self.dialect == "sqlite":
            if async_url.database:
                Path(async_url.database).parent.mkdir(parents=True, exist_ok=True)
            self._writer = create_async_engine(async_url, pool_size=1, max_overflow=0, pool_timeout=60)
            self._reader = create_async_engine(async_url, pool_size=pool_size, max_overflow=pool_size)
            _configure_sqlite(self._writer, "BEGIN IMMEDIATE")
            _configure_sqlite(self._reader, "BEGIN")
        else:
            # No pre-ping (a round trip per checkout): a connection broken by a server restart fails one
            # statement, and SQLAlchemy then invalidates the pool.
            engine = create_async_engine(async_url, pool_size=pool_size, max_overflow=pool_size * 2, pool_recycle=1800)
            self._writer = self._reader = engine

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction that changes state; commits on success, rolls back on any error."""
        async with self._writer.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self._reader.begin() as conn:
            yield conn

    def migrate(self) -> None:
        """Bring the schema to the newest revision (synchronous; called before serving)."""
        from stackcascade.store.migrate import upgrade_to_head

        upgrade_to_head(_driver_url(self.url, asynchronous=False))

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()


async def insert_ignoring_duplicates(
    conn: AsyncConnection, table: sa.Table, rows: list[dict[str, Any]], unique: list[str]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, spelled for the connection's database."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        await conn.execute(pg_insert(table).values(rows).on_conflict_do_nothing(index_elements=unique))
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        await conn.execute(sqlite_insert(table).values(rows).on_conflict_do_nothing(index_elements=unique))
