"""What services may rely on when they execute statements, on both databases.

On PostgreSQL the statements go through ``store.pg_direct`` (compiled by SQLAlchemy, sent by psycopg),
on SQLite through SQLAlchemy's own connection; these tests hold both to the same results.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from stackcascade.store import schema
from stackcascade.store.db import Database

orgs = schema.orgs
stacks = schema.stacks


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    database.migrate()
    try:
        yield database
    finally:
        await database.dispose()


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
