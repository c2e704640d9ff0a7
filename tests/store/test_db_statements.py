"""What services may rely on when they execute statements, on both databases.

On PostgreSQL the statements go through ``store.pg_direct`` (compiled by SQLAlchemy, sent by psycopg),
on SQLite through SQLAlchemy's own connection; these tests hold both to the same results.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg.waiting
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from stackcascade.store import schema
from stackcascade.store.db import Database
from stackcascade.store.pipelined import send, submit
from tests.support import counting_round_trips

orgs = schema.orgs
stacks = schema.stacks


def _org(name: str, concurrency: int = 1) -> dict[str, Any]:
    return {"name": name, "concurrency": concurrency, "created_at": 1.5}


async def _add_stack(db: Database, org: str, name: str, tags: dict[str, Any]) -> None:
    async with db.write() as conn:
        await conn.execute(
            stacks.insert().values(id=f"{org}-{name}", org=org, project="p", name=name, tags=tags, created_at=2.0)
        )


async def test_in_lists_of_every_length_give_the_rows_they_name(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(orgs.insert(), [_org(f"o{i}") for i in range(5)])
    async with db.read() as conn:
        for wanted in ([], ["o1"], ["o0", "o3", "o4"], ["o2", "nope"]):
            found = (await conn.execute(sa.select(orgs.c.name).where(orgs.c.name.in_(wanted)))).scalars().all()
            assert sorted(found) == sorted(set(wanted) & {f"o{i}" for i in range(5)})


async def test_rows_answer_by_column_key_label_and_position(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(orgs.insert().values(**_org("a", 3)))
        row = (
            await conn.execute(
                sa.select(orgs.c.name, orgs.c.concurrency, (orgs.c.concurrency * 2).label("double"), orgs.c.paused)
            )
        ).one()
    assert (row.name, row.concurrency, row.double, row.paused) == ("a", 3, 6, False)
    assert row[0] == "a"
    assert row._asdict() == {"name": "a", "concurrency": 3, "double": 6, "paused": False}


async def test_json_documents_round_trip_and_can_be_compared_in_sql(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(orgs.insert().values(**_org("j")))
    await _add_stack(db, "j", "s", {"team": "infra", "nested": {"n": [1, 2]}})
    async with db.read() as conn:
        tags = await conn.scalar(sa.select(stacks.c.tags).where(stacks.c.org == "j"))
    assert tags == {"team": "infra", "nested": {"n": [1, 2]}}


async def test_updates_and_deletes_report_how_many_rows_they_touched(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(orgs.insert(), [_org("u1"), _org("u2"), _org("v1")])
        updated = await conn.execute(orgs.update().where(orgs.c.name.like("u%")).values(concurrency=7))
        deleted = await conn.execute(orgs.delete().where(orgs.c.name == "nobody"))
    assert (updated.rowcount, deleted.rowcount) == (2, 0)


async def test_returning_gives_the_new_values(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(orgs.insert().values(**_org("r")))
        version = await conn.scalar(
            orgs.update()
            .where(orgs.c.name == "r")
            .values(graph_version=orgs.c.graph_version + 1)
            .returning(orgs.c.graph_version)
        )
    assert version == 1


async def test_aggregates_come_back_as_the_python_type_their_sql_type_names(db: Database) -> None:
    """``avg`` of integers is NUMERIC on PostgreSQL: typed as Float, the row holds a float, not a Decimal."""
    async with db.write() as conn:
        await conn.execute(orgs.insert(), [_org("n1", 1), _org("n2", 2)])
        total, average, as_float = (
            await conn.execute(
                sa.select(
                    sa.func.sum(orgs.c.concurrency),
                    sa.func.avg(orgs.c.created_at),
                    sa.type_coerce(sa.func.avg(orgs.c.concurrency), sa.Float),
                )
            )
        ).one()
    assert total == 3
    assert float(average) == 1.5
    assert isinstance(as_float, float)
    assert as_float == 1.5


async def test_a_unique_violation_is_sqlalchemys_integrity_error_and_nothing_is_written(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(orgs.insert().values(**_org("dup")))
    with pytest.raises(IntegrityError):
        async with db.write() as conn:
            await conn.execute(orgs.insert().values(**_org("other")))
            await conn.execute(orgs.insert().values(**_org("dup")))
    async with db.read() as conn:
        names = (await conn.execute(sa.select(orgs.c.name))).scalars().all()
    assert names == ["dup"]


async def test_a_failed_savepoint_keeps_the_rest_of_the_transaction(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(orgs.insert().values(**_org("kept")))
        with pytest.raises(IntegrityError):
            async with conn.begin_nested():
                await conn.execute(orgs.insert().values(**_org("lost")))
                await conn.execute(orgs.insert().values(**_org("kept")))
        await conn.execute(orgs.insert().values(**_org("after")))
    async with db.read() as conn:
        names = (await conn.execute(sa.select(orgs.c.name).order_by(orgs.c.name))).scalars().all()
    assert names == ["after", "kept"]


async def test_writes_sent_without_waiting_are_seen_by_the_next_statement_and_committed(db: Database) -> None:
    async with db.write() as conn:
        await send(conn, orgs.insert(), [_org("p1"), _org("p2")])
        await send(conn, orgs.update().where(orgs.c.name == "p1").values(concurrency=7))
        assert await conn.scalar(sa.select(orgs.c.concurrency).where(orgs.c.name == "p1")) == 7
        await send(conn, orgs.delete().where(orgs.c.name == "p2"))  # still in flight at the commit
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(orgs.c.name, orgs.c.concurrency))).all()
    assert [tuple(row) for row in rows] == [("p1", 7)]


async def test_a_failing_write_sent_without_waiting_fails_the_transaction_at_a_later_statement(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """On PostgreSQL the error comes with the next statement's answer (SQLite raises it at once), and the
    whole transaction is rolled back; the pooled connection goes back clean (not dropped as left in a
    transaction) and is usable afterwards."""
    async with db.write() as conn:
        await conn.execute(orgs.insert().values(**_org("dup")))
    with pytest.raises(IntegrityError) as caught:
        async with db.write() as conn:
            await send(conn, orgs.insert().values(**_org("other")))
            await send(conn, orgs.insert().values(**_org("dup")))
            await send(conn, orgs.insert().values(**_org("after")))
            await conn.scalar(sa.select(sa.func.count()).select_from(orgs))
    assert "INSERT INTO orgs" in str(caught.value.statement)
    with pytest.raises(IntegrityError):  # the same when the commit is the next statement
        async with db.write() as conn:
            await send(conn, orgs.insert().values(**_org("other")))
            await send(conn, orgs.insert().values(**_org("dup")))
    for _ in range(3):
        async with db.write() as conn:
            assert await conn.scalar(sa.text("SELECT 1")) == 1
    async with db.read() as conn:
        assert (await conn.execute(sa.select(orgs.c.name))).scalars().all() == ["dup"]
    assert not [r for r in caplog.records if "the pool drops it" in r.getMessage()]


async def test_a_transaction_that_raises_with_writes_in_flight_writes_none_of_them(db: Database) -> None:
    with pytest.raises(LookupError):
        async with db.write() as conn:
            await send(conn, orgs.insert().values(**_org("never")))
            raise LookupError("the service refused")
    async with db.write() as conn:
        await send(conn, orgs.insert().values(**_org("next")))
    async with db.read() as conn:
        assert (await conn.execute(sa.select(orgs.c.name))).scalars().all() == ["next"]


async def test_a_savepoint_waits_for_the_writes_sent_before_it_and_within_it(db: Database) -> None:
    async with db.write() as conn:
        await send(conn, orgs.insert().values(**_org("kept")))
        with pytest.raises(IntegrityError):
            async with conn.begin_nested():
                await send(conn, orgs.insert().values(**_org("lost")))
                await send(conn, orgs.insert().values(**_org("kept")))
        await send(conn, orgs.insert().values(**_org("after")))
    async with db.read() as conn:
        names = (await conn.execute(sa.select(orgs.c.name).order_by(orgs.c.name))).scalars().all()
    assert names == ["after", "kept"]


async def test_an_exception_inside_a_savepoint_undoes_only_its_writes_even_those_in_flight(db: Database) -> None:
    async with db.write() as conn:
        await send(conn, orgs.insert().values(**_org("before")))
        with pytest.raises(LookupError):
            async with conn.begin_nested():
                await send(conn, orgs.insert().values(**_org("undone")))
                raise LookupError("the service changed its mind")
        async with conn.begin_nested():
            await send(conn, orgs.insert().values(**_org("kept")))
            read = await submit(conn, sa.select(orgs.c.name).order_by(orgs.c.name))
        assert (await read.result()).scalars().all() == ["before", "kept"]
    async with db.read() as conn:
        names = (await conn.execute(sa.select(orgs.c.name).order_by(orgs.c.name))).scalars().all()
    assert names == ["before", "kept"]


async def test_submitted_statements_answer_as_of_when_they_were_sent(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(orgs.insert(), [_org("s1", 1), _org("s2", 2)])
    async with db.write() as conn:
        before = await submit(conn, sa.select(orgs.c.name, orgs.c.concurrency).order_by(orgs.c.name))
        changed = await submit(conn, orgs.update().where(orgs.c.name == "s1").values(concurrency=5))
        missed = await submit(conn, orgs.update().where(orgs.c.name == "nope").values(concurrency=5))
        after = await submit(conn, sa.select(orgs.c.concurrency).where(orgs.c.name == "s1"))
        await send(conn, orgs.delete().where(orgs.c.name == "s2"))  # after every read above: none sees it
        assert [tuple(row) for row in (await before.result()).all()] == [("s1", 1), ("s2", 2)]
        assert ((await changed.result()).rowcount, (await missed.result()).rowcount) == (1, 0)
        assert (await after.result()).scalar() == 5
    async with db.read() as conn:
        assert [tuple(row) for row in (await conn.execute(sa.select(orgs.c.name, orgs.c.concurrency))).all()] == [
            ("s1", 5)
        ]


async def test_a_read_that_leaves_answers_unread_hands_back_a_clean_connection(db: Database) -> None:
    """An answer never asked for, or one that came back before it was asked for, must not leave the
    pooled connection in pipeline mode: the next transaction on it would read no rows."""
    async with db.write() as conn:
        await conn.execute(orgs.insert().values(**_org("clean", 1)))
    async with db.read() as conn:
        await submit(conn, sa.select(orgs.c.name))  # never read
    async with db.read() as conn:
        answer = await submit(conn, sa.select(orgs.c.concurrency))
        await asyncio.sleep(0.05)  # its answer may arrive while nothing waits for it
        assert (await answer.result()).scalar() == 1
    for expected in (2, 3, 4):  # whichever pooled connection each transaction gets
        async with db.write() as conn:
            bumped = orgs.update().values(concurrency=orgs.c.concurrency + 1).returning(orgs.c.concurrency)
            assert (await conn.execute(bumped)).scalar_one() == expected


async def test_submitted_reads_share_one_round_trip(db: Database) -> None:
    """PostgreSQL only: three reads submitted one after the other, then read, wait for the server once."""
    if not db.is_postgres:
        pytest.skip("SQLite statements run in the process: there is no round trip")

    async def three_reads(conn: Any) -> None:
        answers = [await submit(conn, sa.select(orgs.c.name).where(orgs.c.concurrency == n)) for n in range(3)]
        for answer in answers:
            assert (await answer.result()).all() == []

    assert await _reads_waited_for(db, three_reads) == 1


async def test_round_trips_are_counted_the_same_when_the_server_answers_before_the_client_looks(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL only: the counter the round-trip budgets rely on must not depend on timing. Here every
    look psycopg takes at the socket comes late (as when the process is descheduled on a loaded machine),
    so the answers are already there: counting only the event loop's wake-ups gave 0 instead of 1."""
    if not db.is_postgres:
        pytest.skip("SQLite statements run in the process: there is no round trip")
    ready = psycopg.waiting._ready

    def late(fileno: int, wait: Any) -> int:
        time.sleep(0.005)
        return ready(fileno, wait)

    monkeypatch.setattr(psycopg.waiting, "_ready", late)

    async def three_reads(conn: Any) -> None:
        answers = [await submit(conn, sa.select(orgs.c.name).where(orgs.c.concurrency == n)) for n in range(3)]
        for answer in answers:
            assert (await answer.result()).all() == []

    assert await _reads_waited_for(db, three_reads) == 1
    assert await _reads_waited_for(db, lambda conn: _three_writes_and_a_read(conn, send)) == 1


async def test_writes_sent_without_waiting_share_the_round_trip_of_the_next_statement(db: Database) -> None:
    """PostgreSQL only: three writes and a read cost one wait for the server's answer, not four."""
    if not db.is_postgres:
        pytest.skip("SQLite statements run in the process: there is no round trip")
    waits = await _reads_waited_for(db, lambda conn: _three_writes_and_a_read(conn, send))
    one_by_one = await _reads_waited_for(db, lambda conn: _three_writes_and_a_read(conn, _execute))
    assert waits == 1
    assert one_by_one >= 4  # more once psycopg prepares a statement it has seen often (a round trip of its own)


async def test_a_transaction_of_writes_nobody_reads_is_one_round_trip_and_a_read_one_per_statement(
    db: Database,
) -> None:
    """PostgreSQL only: BEGIN goes out with the first statement and COMMIT with the last writes; a read
    sends neither (each of its statements sees its own snapshot under READ COMMITTED anyway)."""
    if not db.is_postgres:
        pytest.skip("SQLite statements run in the process: there is no round trip")
    async with db.write() as conn:  # the pool's connection made (and SQLAlchemy's first look at the server)
        await conn.scalar(sa.text("SELECT 1"))
    with counting_round_trips() as waits:
        async with db.write() as conn:
            await send(conn, orgs.insert().values(**_org("w1")))
            await send(conn, orgs.insert().values(**_org("w2")))
    assert waits.count == 1
    with counting_round_trips() as waits:
        async with db.read() as conn:
            assert await conn.scalar(sa.select(sa.func.count()).select_from(orgs)) == 2
    assert waits.count == 1
    with pytest.raises(IntegrityError):  # and a failed one still rolls back as a whole
        async with db.write() as conn:
            await send(conn, orgs.insert().values(**_org("w3")))
            await send(conn, orgs.insert().values(**_org("w1")))
    async with db.read() as conn:
        assert (await conn.execute(sa.select(orgs.c.name).order_by(orgs.c.name))).scalars().all() == ["w1", "w2"]


async def _execute(conn: Any, statement: Any, parameters: Any = None) -> None:
    await conn.execute(statement, parameters)


async def _three_writes_and_a_read(conn: Any, write: Any) -> None:
    await write(conn, orgs.update().values(concurrency=orgs.c.concurrency + 1))
    await write(conn, orgs.update().values(concurrency=orgs.c.concurrency + 1))
    await write(conn, orgs.update().values(concurrency=orgs.c.concurrency + 1))
    await conn.scalar(sa.select(sa.func.count()).select_from(orgs))


async def _reads_waited_for(db: Database, work: Any) -> int:
    """How often ``work`` waited for the server's answers, inside a transaction that has begun."""
    async with db.write() as conn:
        await conn.scalar(sa.text("SELECT 1"))  # BEGIN and this: not counted
        with counting_round_trips() as waits:
            await work(conn)
    return waits.count


async def test_text_statements_and_bound_parameters(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(orgs.insert().values(**_org("t", 4)))
        row = (await conn.execute(sa.text("SELECT name, concurrency FROM orgs WHERE name = :n"), {"n": "t"})).one()
    assert (row.name, row.concurrency) == ("t", 4)


async def test_the_same_statement_with_other_values_is_not_confused_with_the_first(db: Database) -> None:
    """Compiled statements are cached by shape; the literal values of each instance must still be used."""
    async with db.write() as conn:
        await conn.execute(orgs.insert(), [_org("c1", 1), _org("c2", 2)])
        first = await conn.scalar(sa.select(orgs.c.concurrency).where(orgs.c.name == "c1"))
        second = await conn.scalar(sa.select(orgs.c.concurrency).where(orgs.c.name == "c2"))
    assert (first, second) == (1, 2)


async def test_statement_listeners_see_every_statement(db: Database) -> None:
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", listen)
    try:
        async with db.write() as conn:
            await conn.execute(orgs.insert().values(**_org("l")))
            await conn.scalar(sa.select(orgs.c.name).where(orgs.c.name == "l"))
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", listen)
    assert [statement.split()[0] for statement in seen if not statement.startswith(("BEGIN", "PRAGMA"))] == [
        "INSERT",
        "SELECT",
    ]


async def test_a_connection_the_server_dropped_fails_its_transaction_and_the_next_one_gets_a_fresh_one(
    db: Database,
) -> None:
    """PostgreSQL only: a backend terminated under a transaction (a server restart, a failover)."""
    if not db.is_postgres:
        pytest.skip("SQLite has no server connection to lose")
    import psycopg

    with pytest.raises(sa.exc.DBAPIError) as caught:
        async with db.write() as conn:
            pid = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
            killer = await psycopg.AsyncConnection.connect(db.url, autocommit=True)
            async with killer:
                await killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await conn.execute(orgs.insert().values(**_org("lost")))
    assert caught.value.connection_invalidated
    assert "INSERT INTO orgs" in str(caught.value.statement)  # the error names the statement that failed
    for _ in range(3):  # every pooled connection that is handed out works
        async with db.write() as conn:
            assert await conn.scalar(sa.text("SELECT 1")) == 1
    async with db.read() as conn:
        assert (await conn.execute(sa.select(orgs.c.name))).scalars().all() == []


async def test_a_column_default_computed_in_python_is_refused_on_postgresql_rather_than_left_out(db: Database) -> None:
    """The schema uses server defaults only; a Python-side default would silently be missing from the row."""
    with_default = sa.Table(
        "orgs",
        sa.MetaData(),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("concurrency", sa.Integer, default=lambda: 9),
        sa.Column("created_at", sa.Double),
    )
    statement = with_default.insert().values(name="d", created_at=1.0)
    if db.is_postgres:
        with pytest.raises(sa.exc.CompileError, match="server_default"):
            async with db.write() as conn:
                await conn.execute(statement)
        return
    async with db.write() as conn:  # SQLAlchemy's own execution on SQLite computes the default
        await conn.execute(statement)
        assert await conn.scalar(sa.select(orgs.c.concurrency).where(orgs.c.name == "d")) == 9
