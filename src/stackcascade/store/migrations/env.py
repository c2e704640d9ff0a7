"""Alembic environment: always given a connection by stackcascade.store.migrate."""

from __future__ import annotations

from alembic import context

from stackcascade.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations through `cascade serve` or stackcascade.store.migrate.upgrade_to_head")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
