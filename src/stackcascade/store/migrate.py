"""Bring a database to the current schema; one Alembic tree serves both databases.

Start-up fast path: a database already at ``HEAD`` needs nothing, and an empty database gets the
declared tables created directly and is stamped at ``HEAD``. Both are equivalent to running the
migrations because a test proves the migrations build exactly the declared tables. Anything else
(an older schema) goes through Alembic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0010"  # the newest revision in migrations/versions (a test keeps this in step)
_PG_MIGRATION_LOCK = 7_263_001  # advisory lock id: replicas starting together migrate one at a time


def alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _current_revision(connection: sa.Connection) -> str | None:
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return connection.scalar(sa.text("SELECT version_num FROM alembic_version"))


def has_schema(url: URL) -> bool:
    """Whether the database exists and holds a stackcascade schema; a SQLite file is never created here."""
    if url.get_backend_name() == "sqlite":
        path = url.database
        if not path or path == ":memory:" or not Path(path).is_file():
            return False
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return _current_revision(connection) is not None
    finally:
        engine.dispose()


def upgrade_to_head(url: URL) -> None:
    from stackcascade.store.schema import metadata

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            if url.get_backend_name() == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
            current = _current_revision(connection)
            if current == HEAD:
                return
            if current is None and not sa.inspect(connection).get_table_names():
                metadata.create_all(connection)
                connection.execute(
                    sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
                )
                connection.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": HEAD})
                return
            from alembic import command

            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
