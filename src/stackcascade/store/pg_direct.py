"""Statements on PostgreSQL straight through psycopg's async connection, compiled by SQLAlchemy.

SQLAlchemy's asyncio extension runs each statement in a greenlet over an adapted cursor that awaits
psycopg. With the statement mix of a finish, 8 transactions at once (``bench/pg_statements.py``), that
costs about 0.27 ms of CPU per statement more than this module does (1.00 against 0.73 ms), and a
deployment makes about 55 statements, all on the server's one event loop. This module keeps what SQLAlchemy does well (building, compiling and caching
statements, bind and result types, exception classes) and sends the compiled text itself:

* compiled statements are cached by the statement's cache key (as SQLAlchemy's engine does), together
  with the parameter names given and whether it is an executemany;
* parameters go through the same steps as ``DefaultExecutionContext._init_compiled``: extracted
  literals, ``IN`` lists expanded, bind processors, escaped names;
* rows come back as SQLAlchemy ``Row`` objects under the statement's own column keys, with the types'
  result processors applied;
* psycopg's errors become SQLAlchemy's (``IntegrityError`` and so on), so callers catch one family;
* ``before_cursor_execute`` / ``after_cursor_execute`` listeners on engines still see every statement.

The pool stays with SQLAlchemy. The transaction is this module's: its connections are in autocommit
mode, and ``BEGIN`` goes out with the transaction's first statement (psycopg would send it as a round trip
of its own), ``COMMIT`` with its last writes, savepoints with the statements they enclose.

Writes whose answer nobody reads (``enqueue``) go out in psycopg's pipeline mode: sent at once, their
answers read together with the next statement's, or with the ``COMMIT`` (``commit``), in one round trip.
Reads that do not depend on each other can go out together the same way (``submit``), each answer read
when asked for. On a busy event loop every round trip waits a pass of the loop: a cascade member's
finish made 19-24 of them, and now makes 3-6. An error of such a write surfaces at that next statement
(with the text of the statements sent together) and fails the transaction, as it would have where it
was sent. A connection that is still in pipeline mode or in a transaction when its work ends is never
handed back to the pool (``Database``'s transaction drops it, with a warning).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData
from sqlalchemy.util import LRUCache

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection
    from sqlalchemy.sql.compiler import SQLCompiler


@dataclass(slots=True)
class _Prepared:
    compiled: SQLCompiler
    keys: list[str] | None  # the result's column keys; None: take them from the cursor
    expands: bool  # IN lists (or literal_execute parameters) are rendered per execution
    # The types' result processors depend on the column types the server reports: worked out on the
    # first execution and kept for as long as the server reports the same ones.
    type_codes: tuple[int, ...] | None = None
    result_processors: list[Callable[[Any], Any] | None] | None = None

    def processors_for(self, description: Sequence[Any]) -> list[Callable[[Any], Any] | None] | None:
        type_codes = tuple(column.type_code for column in description)
        if type_codes != self.type_codes:
            dialect = self.compiled.dialect
            found = [
                column[3]._cached_result_processor(dialect, type_code)
                for column, type_code in zip(self.compiled._result_columns, type_codes, strict=True)
            ]
            self.result_processors = found if any(found) else None
            self.type_codes = type_codes
        return self.result_processors


class StatementCache:
    """Compiled statements for one dialect, shared by every connection of a ``Database``."""

    def __init__(self, dialect: sa.Dialect, size: int = 1000) -> None:
        self.dialect = dialect
        self._cache: LRUCache[Any, _Prepared] = LRUCache(size)

    def prepare(self, statement: Any, column_keys: list[str], executemany: bool) -> tuple[_Prepared, Any]:
        """The compiled form of ``statement`` and the literal parameters extracted from this instance."""
        key = statement._generate_cache_key()
        if key is None:  # not cacheable: compile every time
            return self._compile(statement, None, column_keys, executemany), None
        cache_key = (key.key, tuple(column_keys), executemany)
        prepared = self._cache.get(cache_key)
        if prepared is None:
            prepared = self._compile(statement, key, column_keys, executemany)
            self._cache[cache_key] = prepared
        return prepared, key[1]

    def _compile(self, statement: Any, key: Any, column_keys: list[str], executemany: bool) -> _Prepared:
        compiled: SQLCompiler = statement.compile(
            dialect=self.dialect,
            cache_key=key,
            column_keys=column_keys or None,
            for_executemany=executemany,
        )
        if compiled.insert_prefetch or compiled.update_prefetch:
            # Python-side column defaults: the schema has none (server defaults only); refuse rather than
            # silently write rows without them.
            raise sa.exc.CompileError(
                "the store's PostgreSQL path has no Python-side column defaults: use server_default"
            )
        if compiled.schema_translate_map:
            raise sa.exc.CompileError("the store's PostgreSQL path does not translate schemas")
        columns = compiled._result_columns
        keys = [column[0] for column in columns] if columns else None
        expands = bool(compiled.literal_execute_params or compiled.post_compile_params)
        return _Prepared(compiled, keys, expands)


class DirectResult(IteratorResult[Any]):
    """A buffered result with the ``rowcount`` of its statement."""

    rowcount: int


class DirectConnection:
    """The part of ``AsyncConnection`` the store uses, executing through psycopg directly."""

    def __init__(
        self, connection: AsyncConnection, driver: Any, cache: StatementCache, *, transaction: bool = True
    ) -> None:
        self._connection = connection
        self._transaction = transaction  # False: each statement commits on its own (reads)
        self._begun = False
        self._driver = driver  # psycopg.AsyncConnection
        self._cache = cache
        self._pipeline: Any = None  # psycopg.AsyncPipeline while enqueued writes await their answers
        self._in_flight: list[str] = []  # their SQL, to name them if one of them fails
        self._savepoints = 0  # savepoints begun, for unique names

    @property
    def dialect(self) -> sa.Dialect:
        return self._cache.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> DirectResult:
        prepared, sql, params, executemany = self._prepare(statement, parameters)
        if self._transaction and not self._begun:
            await self._begin()
        return await self._run(prepared, sql, params, executemany)

    async def enqueue(self, statement: Any, parameters: Any = None) -> None:
        """Send a write whose result nobody reads, without waiting for its answer (see the module doc)."""
        sent = await self.submit(statement, parameters)
        self._after(sent.cursor, sent.sql, sent.params, sent.executemany)

    async def submit(self, statement: Any, parameters: Any = None) -> DirectAnswer:
        """Send a statement now and read its answer when asked: statements submitted one after the other
        (and the writes enqueued between them) share one round trip."""
        prepared, sql, params, executemany = self._prepare(statement, parameters)
        if self._transaction and not self._begun:
            await self._begin()
        await self._enter_pipeline(sql, params)
        cursor = self._driver.cursor()
        await self._send(cursor, sql, params, executemany)
        return DirectAnswer(self, prepared, cursor, sql, params, executemany)

    async def commit(self) -> None:
        """Send ``COMMIT`` behind the writes still in flight, and read every answer in one round trip."""
        if self._begun:
            await self._control("COMMIT")
        if self._pipeline is not None:  # with a read, answers that were not all asked for: read them now
            await self._drain()
        self._begun = False  # only now: if the COMMIT failed, ``rollback`` still ends the transaction

    def is_idle(self) -> bool:
        """Whether the connection is out of pipeline mode and outside a transaction: fit for the pool."""
        pgconn = self._driver.pgconn  # libpq's own view: OFF and IDLE
        return self._pipeline is None and pgconn.pipeline_status == 0 and pgconn.transaction_status == 0

    def describe_state(self) -> str:
        pgconn = self._driver.pgconn
        return f"in pipeline status {pgconn.pipeline_status}, transaction status {pgconn.transaction_status}"

    async def rollback(self) -> None:
        """After an error: leave pipeline mode, and roll the transaction back if it began."""
        await self.abandon()
        if self._begun:
            self._begun = False
            # A lost connection fails this too: the caller raises its own error, and the pool drops it.
            with contextlib.suppress(self.dialect.loaded_dbapi.Error):
                await self._driver.cursor().execute("ROLLBACK")

    async def _begin(self) -> None:
        """``BEGIN``, in the pipeline: it goes out with the transaction's first statement."""
        self._begun = True
        await self._control("BEGIN")

    async def _control(self, command: str) -> None:
        """Send a transaction command in the pipeline (statement listeners do not see these, as with
        SQLAlchemy's own BEGIN and COMMIT)."""
        await self._enter_pipeline(command, [{}])
        self._in_flight.append(command)
        try:
            await self._driver.cursor().execute(command)
        except self.dialect.loaded_dbapi.Error as exc:
            await self._raise(exc, command, [{}])

    async def abandon(self) -> None:
        """Leave pipeline mode, reading (and dropping) the answers in flight: after an error, or before
        rolling back to a savepoint."""
        pipeline, self._pipeline = self._pipeline, None
        self._in_flight = []
        if pipeline is not None:
            with contextlib.suppress(self.dialect.loaded_dbapi.Error):  # the error the caller has is the one
                await pipeline.__aexit__(None, None, None)

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return (await self.execute(statement, parameters)).scalar()

    @contextlib.asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        """A savepoint: an error inside the block undoes only the block, and is raised inside it.

        ``SAVEPOINT`` and ``RELEASE`` go out with the block's statements, and the answers of all of them
        are read when the block ends: a block of writes costs one round trip, and the block's errors
        (even those of writes whose answer nobody reads) are raised here, where the caller catches them.
        """
        self._savepoints += 1
        name = f"direct_savepoint_{self._savepoints}"
        await self.enqueue(sa.text(f"SAVEPOINT {name}"))
        try:
            yield
            await self.enqueue(sa.text(f"RELEASE SAVEPOINT {name}"))
            if self._pipeline is not None:
                await self._drain()
        except BaseException:
            await self.abandon()  # the answers still in flight (the error, if any, is the one raised)
            await self.execute(sa.text(f"ROLLBACK TO SAVEPOINT {name}"))
            raise

    def _prepare(self, statement: Any, parameters: Any) -> tuple[_Prepared, str, list[dict[str, Any]], bool]:
        if isinstance(parameters, Sequence) and not isinstance(parameters, str | bytes):
            many = list(parameters)
        else:
            many = [parameters] if parameters else []
        executemany = len(many) > 1
        column_keys = sorted(many[0]) if many else []
        prepared, extracted = self._cache.prepare(statement, column_keys, executemany)
        sql, params = _render(prepared, many, extracted)
        return prepared, sql, params, executemany

    async def _enter_pipeline(self, sql: str, params: list[dict[str, Any]]) -> None:
        if self._pipeline is None:
            pipeline = self._driver.pipeline()
            try:
                await pipeline.__aenter__()
            except self.dialect.loaded_dbapi.Error as exc:
                await self._raise(exc, sql, params)
            self._pipeline = pipeline

    async def _run(
        self, prepared: _Prepared, sql: str, params: list[dict[str, Any]], executemany: bool
    ) -> DirectResult:
        cursor = self._driver.cursor()
        await self._send(cursor, sql, params, executemany)
        return await self._result(prepared, cursor, sql, params, executemany)

    async def _result(
        self, prepared: _Prepared, cursor: Any, sql: str, params: list[dict[str, Any]], executemany: bool
    ) -> DirectResult:
        """The answer to a statement sent on ``cursor``, read with everything in flight if not read yet."""
        try:
            if self._pipeline is not None and (executemany or cursor.pgresult is None):
                await self._drain()
            rows = await cursor.fetchall() if not executemany and cursor.description is not None else []
        except self.dialect.loaded_dbapi.Error as exc:
            await self._raise(exc, sql, params, cursor)
        self._after(cursor, sql, params, executemany)
        description = cursor.description or ()
        keys = prepared.keys
        if keys is None or len(keys) != len(description):  # text(), or no rows returned at all
            keys = [column.name for column in description]
            processors = None
        else:
            processors = prepared.processors_for(description)
        result = DirectResult(SimpleResultMetaData(keys, _processors=processors), iter(rows))
        result.rowcount = cursor.rowcount
        await cursor.close()
        return result

    async def _send(self, cursor: Any, sql: str, params: list[dict[str, Any]], executemany: bool) -> None:
        """Execute on ``cursor``: in pipeline mode this only sends the statement."""
        if self._pipeline is not None:
            self._in_flight.append(sql)
        dispatch = self._connection.sync_engine.dispatch
        if dispatch.before_cursor_execute:
            parameters: Any = params if executemany else params[0]
            dispatch.before_cursor_execute(self._connection.sync_connection, cursor, sql, parameters, None, executemany)
        try:
            if executemany:
                await cursor.executemany(sql, params)
            else:
                await cursor.execute(sql, params[0])
        except self.dialect.loaded_dbapi.Error as exc:
            await self._raise(exc, sql, params, cursor)

    def _after(self, cursor: Any, sql: str, params: list[dict[str, Any]], executemany: bool) -> None:
        dispatch = self._connection.sync_engine.dispatch
        if dispatch.after_cursor_execute:
            parameters: Any = params if executemany else params[0]
            dispatch.after_cursor_execute(self._connection.sync_connection, cursor, sql, parameters, None, executemany)

    async def _drain(self) -> None:
        """Leave pipeline mode: one round trip (a Sync) reads the answers of everything in flight."""
        pipeline, self._pipeline = self._pipeline, None
        in_flight, self._in_flight = self._in_flight, []
        try:
            await pipeline.__aexit__(None, None, None)
        except self.dialect.loaded_dbapi.Error as exc:
            await self._raise(exc, _together(in_flight), [{}])

    async def _raise(self, exc: Exception, sql: str, params: list[dict[str, Any]], cursor: Any = None) -> NoReturn:
        """Raise ``exc`` as SQLAlchemy's own execution would.

        A lost connection is invalidated here, as SQLAlchemy does: the pool drops it, and the caller sees
        this statement's error rather than the failed ROLLBACK's.
        """
        if self._pipeline is not None:  # an answer came back while sending: leave pipeline mode for the rollback
            sql, params = _together(self._in_flight), [{}]
            await self.abandon()
        parameters: Any = params if len(params) > 1 else params[0]
        lost = self.dialect.is_disconnect(exc, self._driver, cursor)
        error = sa.exc.DBAPIError.instance(
            sql, parameters, exc, self.dialect.loaded_dbapi.Error, dialect=self.dialect, connection_invalidated=lost
        )
        if lost:
            await self._connection.invalidate()
        raise error from exc


@dataclass(frozen=True, slots=True)
class DirectAnswer:
    """A statement sent by ``DirectConnection.submit``, its answer not read yet."""

    connection: DirectConnection
    prepared: _Prepared
    cursor: Any
    sql: str
    params: list[dict[str, Any]]
    executemany: bool

    async def result(self) -> DirectResult:
        """The statement's result: a round trip for it and everything sent with it, unless read already."""
        return await self.connection._result(self.prepared, self.cursor, self.sql, self.params, self.executemany)


def _together(in_flight: list[str]) -> str:
    """The statements whose answers came back together: which one failed is in the error's message."""
    return "\n-- sent together with\n".join(in_flight)


def _render(prepared: _Prepared, many: list[Any], extracted: Any) -> tuple[str, list[dict[str, Any]]]:
    """The SQL text and the driver's parameters, as ``DefaultExecutionContext._init_compiled`` makes them."""
    compiled = prepared.compiled
    if many:
        values = [
            compiled.construct_params(params, escape_names=False, _group_number=group, extracted_parameters=extracted)
            for group, params in enumerate(many)
        ]
    else:
        values = [compiled.construct_params(escape_names=False, extracted_parameters=extracted)]
    sql = compiled.string
    processors: Any = compiled._bind_processors
    if prepared.expands:
        if len(values) > 1:
            raise sa.exc.InvalidRequestError("'expanding' parameters can't be used with executemany()")
        expanded = compiled._process_parameters_for_postcompile(values[0])
        sql = expanded.statement
        values = [expanded.parameters]
        processors = {**processors, **expanded.processors}
    escaped = compiled.escaped_bind_names
    rendered = [
        {
            (escaped.get(key, key) if escaped else key): (processors[key](value) if key in processors else value)
            for key, value in params.items()
        }
        for params in values
    ]
    return sql, rendered
