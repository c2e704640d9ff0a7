"""Store tests: a migrated, empty database of each engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stackcascade.store.db import Database


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    database.migrate()
    try:
        yield database
    finally:
        await database.dispose()
