"""The database adapter: the one place where SQLite and PostgreSQL differ.

Services see one async API: ``write()`` opens a transaction that changes state (commit on success,
rollback on any error) and ``read()`` a snapshot for reads.

* PostgreSQL: SQLAlchemy's async engine on psycopg 3 holds the pool and the transactions; statements
  are compiled by SQLAlchemy and sent through psycopg directly (``store/pg_direct``).
* SQLite (the embedded default): statements run synchronously on the event loop. A local SQLite
  statement takes microseconds, while a thread hop per statement (aiosqlite) cost about a millisecond
  each. Writers of this process queue on an ``asyncio.Lock`` and then take the file's write lock with
  ``BEGIN IMMEDIATE``, so another process's writer (a second server, ``cascade admin-token``) is waited
  for by SQLite's busy timeout, never raced. One ``Database`` per process and event loop: two of them
  writing from the same loop would wait on each other's file lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from stackcascade.store.events import appended_in_transaction
from stackcascade.store.pg_direct import DirectConnection, StatementCache
from stackcascade.store.transaction_marks import (
    cascades_behind_in_transaction,
    graphs_changed_in_transaction,
    orgs_created_in_transaction,
)

if TYPE_CHECKING:  # the asyncio extension is imported only when PostgreSQL is used
    from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger("stackcascade.store")

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
)


# PostgreSQL's serialization_failure and deadlock_detected: the transaction lost to a concurrent one and
# was rolled back whole; the same request, sent again, can succeed.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})


def is_transient_conflict(exc: BaseException) -> bool:
    """Whether a database error means "lost to a concurrent transaction, nothing written: retry".

    PostgreSQL resolves a deadlock by failing one of the transactions; SQLite's busy timeout can run
    out while another process holds the write lock. Anything else is a real error.
    """
    cause = getattr(exc, "orig", None) or exc
    if getattr(cause, "sqlstate", None) in _TRANSIENT_SQLSTATES:
        return True
    return isinstance(cause, sqlite3.OperationalError) and "database is locked" in str(cause)


def has_schema(url: str) -> bool:
    """Whether the database at ``url`` exists and holds a stackcascade schema; creates nothing (no SQLite
    file, no data dir): unlike ``Database``, which makes them."""
    from stackcascade.store.migrate import has_schema as _has_schema

    return _has_schema(_driver_url(url))


def sqlite_url_for(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'cascade.db').resolve()}"


def _driver_url(url: str) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+pysqlite")
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: use sqlite:/// or postgresql://"
    )


def _sqlite_engine(url: URL, *, begin: str, pool_size: int) -> Engine:
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_reset_on_return=None,  # every use ends in commit or rollback already
        connect_args={"check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


class InlineConnection:
    """The part of ``AsyncConnection`` the store uses, over a synchronous (SQLite) connection."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def dialect(self) -> sa.Dialect:
        return self._connection.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self._connection.execute(statement, parameters)

    async def enqueue(self, statement: Any, parameters: Any = None) -> None:
        """A write whose result nobody reads (PostgreSQL pipelines these): SQLite runs it here and now."""
        self._connection.execute(statement, parameters)

    async def submit(self, statement: Any, parameters: Any = None) -> Answered:
        """A statement whose answer is read later (PostgreSQL pipelines these): SQLite runs it now and keeps
        its rows, so that statements run in between cannot change what it answers."""
        return Answered(self._connection.execute(statement, parameters))

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return self._connection.scalar(statement, parameters)

    @contextlib.asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        with self._connection.begin_nested():
            yield


class Answered:
    """The result of ``InlineConnection.submit``, fetched when the statement ran."""

    __slots__ = ("_frozen", "_rowcount")

    def __init__(self, result: Any) -> None:
        self._rowcount = result.rowcount
        self._frozen = result.freeze() if result.returns_rows else None

    async def result(self) -> Any:
        if self._frozen is None:
            return _RowCount(self._rowcount)
        return self._frozen()


@dataclass(frozen=True, slots=True)
class _RowCount:
    """The result of a submitted statement that returns no rows."""

    rowcount: int


class Database:
    """Engines for one database URL."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        driver_url = _driver_url(url)
        self.dialect = driver_url.get_backend_name()
        self.on_events_committed: Callable[[], None] | None = None
        self.on_graphs_committed: Callable[[frozenset[str]], None] | None = None
        self.on_orgs_created: Callable[[frozenset[str]], None] | None = None
        self.on_cascades_behind: Callable[[frozenset[str]], None] | None = None
        if self.dialect == "sqlite":
            if driver_url.database:
                Path(driver_url.database).parent.mkdir(parents=True, exist_ok=True)
            self._sqlite_writer = _sqlite_engine(driver_url, begin="BEGIN IMMEDIATE", pool_size=1)
            self._sqlite_reader = _sqlite_engine(driver_url, begin="BEGIN", pool_size=pool_size)
            self._write_lock: asyncio.Lock | None = None
        else:
            # No pre-ping (a round trip per checkout): a connection broken by a server restart fails one
            # statement, and SQLAlchemy then invalidates the pool.
            # Overflow connections are closed when returned, so size the pool for the expected concurrency.
            from sqlalchemy.ext.asyncio import create_async_engine

            # Autocommit: psycopg would send BEGIN as a round trip of its own; pg_direct sends it with the
            # transaction's first statement instead.
            self._engine = create_async_engine(
                driver_url,
                pool_size=pool_size * 3,
                max_overflow=pool_size,
                pool_recycle=1800,
                isolation_level="AUTOCOMMIT",
            )
            self._statements = StatementCache(self._engine.dialect)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def libpq_dsn(self) -> str:
        """PostgreSQL: the URL as libpq takes it, for a connection outside the pool (``notifications``)."""
        return _driver_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    @property
    def exclusive_writes(self) -> bool:
        """SQLite: a write transaction holds the database's one write lock from its BEGIN (IMMEDIATE)."""
        return not self.is_postgres

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction that changes state; commits on success, rolls back on any error.

        When the transaction appended events, ``on_events_committed`` is called after the commit; when it
        changed deployment graphs, ``on_graphs_committed`` is called with their orgs; when it created orgs,
        ``on_orgs_created`` with their names; when it ended cascade members without advancing their
        cascades, ``on_cascades_behind`` with those cascades.
        """
        marker = appended_in_transaction.set(False)
        graphs_marker = graphs_changed_in_transaction.set(set())
        orgs_marker = orgs_created_in_transaction.set(set())
        behind_marker = cascades_behind_in_transaction.set(set())
        try:
            if self.is_postgres:
                async with self._postgres_transaction() as direct:
                    yield direct  # type: ignore[misc]
            else:
                if self._write_lock is None:
                    self._write_lock = asyncio.Lock()
                async with self._write_lock:
                    with self._sqlite_transaction(self._sqlite_writer) as inline:
                        yield inline  # type: ignore[misc]
            if appended_in_transaction.get() and self.on_events_committed is not None:
                self.on_events_committed()
            changed = graphs_changed_in_transaction.get()
            if changed and self.on_graphs_committed is not None:
                self.on_graphs_committed(frozenset(changed))
            created = orgs_created_in_transaction.get()
            if created and self.on_orgs_created is not None:
                self.on_orgs_created(frozenset(created))
            behind = cascades_behind_in_transaction.get()
            if behind and self.on_cascades_behind is not None:
                self.on_cascades_behind(frozenset(behind))
        finally:
            appended_in_transaction.reset(marker)
            graphs_changed_in_transaction.reset(graphs_marker)
            orgs_created_in_transaction.reset(orgs_marker)
            cascades_behind_in_transaction.reset(behind_marker)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        if self.is_postgres:  # no BEGIN: under READ COMMITTED each statement sees its own snapshot anyway
            async with self._postgres_transaction(transaction=False) as direct:
                yield direct  # type: ignore[misc]
            return
        with self._sqlite_transaction(self._sqlite_reader) as conn:
            yield conn  # type: ignore[misc]

    @contextlib.asynccontextmanager
    async def _postgres_transaction(self, *, transaction: bool = True) -> AsyncIterator[DirectConnection]:
        """A pooled connection (in autocommit mode) whose statements go to psycopg directly (see pg_direct),
        which sends ``BEGIN`` with the first statement and ``COMMIT`` with the last writes (``transaction``)."""
        async with self._engine.connect() as conn:
            pooled = await conn.get_raw_connection()
            direct = DirectConnection(conn, pooled.driver_connection, self._statements, transaction=transaction)
            try:
                try:
                    yield direct
                    await direct.commit()
                except BaseException:
                    await direct.rollback()
                    raise
            finally:
                if not conn.invalidated and not direct.is_idle():
                    # Never hand the next transaction a connection in pipeline mode or inside a transaction:
                    # its statements would read answers that are not theirs.
                    log.warning("a PostgreSQL connection was left %s: the pool drops it", direct.describe_state())
                    await conn.invalidate()

    @staticmethod
    @contextlib.contextmanager
    def _sqlite_transaction(engine: Engine) -> Iterator[InlineConnection]:
        with engine.begin() as connection:
            yield InlineConnection(connection)

    def migrate(self) -> None:
        """Bring the schema to the newest revision (synchronous; called before serving)."""
        from stackcascade.store.migrate import upgrade_to_head

        upgrade_to_head(_driver_url(self.url))

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        if self.is_postgres:
            await self._engine.dispose()
        else:
            self._sqlite_writer.dispose()
            self._sqlite_reader.dispose()


async def insert_ignoring_duplicates(
    conn: AsyncConnection, table: sa.Table, rows: list[dict[str, Any]], unique: list[str]
) -> int:
    """INSERT ... ON CONFLICT DO NOTHING, spelled for the connection's database; the rows inserted."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement: Any = pg_insert(table).values(rows).on_conflict_do_nothing(index_elements=unique)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(table).values(rows).on_conflict_do_nothing(index_elements=unique)
    return int((await conn.execute(statement)).rowcount)
