"""One Alembic tree builds exactly the schema the code declares, on both databases."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import make_url

from stackcascade.store.db import Database
from stackcascade.store.migrate import HEAD, upgrade_to_head
from stackcascade.store.schema import metadata


def _sync_url(database_url: str) -> sa.URL:
    url = make_url(database_url)
    return url.set(drivername="postgresql+psycopg") if url.get_backend_name() == "postgresql" else url


def test_migrated_schema_matches_the_declared_tables(database_url: str) -> None:
    upgrade_to_head(_sync_url(database_url))
    engine = sa.create_engine(_sync_url(database_url))
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_migrating_twice_changes_nothing(database_url: str) -> None:
    db = Database(database_url)
    db.migrate()
    db.migrate()
    engine = sa.create_engine(_sync_url(database_url))
    try:
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == HEAD
    finally:
        engine.dispose()


def test_head_constant_is_the_newest_migration() -> None:
    from alembic.script import ScriptDirectory

    from stackcascade.store.migrate import HEAD, alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


def test_every_migration_applied_one_by_one_builds_the_declared_tables(database_url: str) -> None:
    """The start-up fast path creates tables directly; the real migrations must build the same thing."""
    from alembic import command

    from stackcascade.store.migrate import alembic_config

    engine = sa.create_engine(_sync_url(database_url))
    try:
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_upgrading_to_webhooks_keeps_old_events_out_of_the_dispatcher(database_url: str) -> None:
    """Events recorded before 0003 had no webhooks to go to; the dispatcher must not replay them."""
    from alembic import command

    from stackcascade.store.migrate import alembic_config

    engine = sa.create_engine(_sync_url(database_url))
    try:
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "0002")
            conn.execute(
                sa.text("INSERT INTO events (org, kind, payload, created_at) VALUES ('o', 'stack_created', '{}', 1.0)")
            )
            command.upgrade(config, "head")
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT kind, dispatched FROM events")).all()
    finally:
        engine.dispose()
    assert [(kind, bool(dispatched)) for kind, dispatched in rows] == [("stack_created", True)]
