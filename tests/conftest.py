"""Shared fixtures: every store and end-to-end test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest

from stackcascade.services.context import Context
from stackcascade.services.secrets import SecretBox
from stackcascade.store.db import Database
from tests.support import DATABASES, LiveServer, fresh_database, serving


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def ctx(database_url: str) -> AsyncIterator[Context]:
    """A services context on a migrated, empty database (both engines)."""
    db = Database(database_url)
    db.migrate()
    context = Context(db=db, secrets=SecretBox.generate(), org_concurrency=25, lease_seconds=30)
    try:
        yield context
    finally:
        await context.settle()
        await db.dispose()


@pytest.fixture(scope="module", params=DATABASES)
def live_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real HTTP server per test module and database; tests isolate themselves by org name."""
    data_dir = tmp_path_factory.mktemp("server")
    with serving(request.param, data_dir) as server:
        yield server


@pytest.fixture(scope="module", params=DATABASES)
def loopback_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real server allowed to deliver webhooks to loopback (CASCADE_WEBHOOK_ALLOW_NETWORKS=127.0.0.0/8)."""
    data_dir = tmp_path_factory.mktemp("loopback")
    with serving(request.param, data_dir, webhook_allow_networks="127.0.0.0/8") as server:
        yield server


@pytest.fixture(scope="module", params=DATABASES)
def pool_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real server with two local runners, so deployments actually run (one per test module and database)."""
    data_dir = tmp_path_factory.mktemp("pool")
    with serving(request.param, data_dir, runners=2) as server:
        yield server


@pytest.fixture
def org() -> str:
    """A fresh organization name, so tests sharing a server never see each other's stacks."""
    return f"org-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def admin(live_server: LiveServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(
        base_url=live_server.url, headers={"Authorization": f"token {live_server.admin_token}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def anonymous(live_server: LiveServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=live_server.url, timeout=30) as client:
        yield client
