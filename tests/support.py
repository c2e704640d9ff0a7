"""Test helpers: databases on both engines and a real HTTP server in a background thread."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import psycopg.waiting
import pytest
import uvicorn

PG_ADMIN_DSN = os.environ.get("CASCADE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASES = ("sqlite", "postgresql")


def postgres_reachable() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def require_postgres() -> None:
    """Skip with a clear message locally; fail under CI=true, where PostgreSQL must be there."""
    if postgres_reachable():
        return
    message = f"PostgreSQL is unreachable at {PG_ADMIN_DSN}; start it (pg_ctlcluster ... main start) to run these tests"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: PostgreSQL tests may not be skipped)")
    pytest.skip(message)


@contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A database URL nobody else uses; PostgreSQL databases are dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'cascade.db'}"
        return
    require_postgres()
    name = f"cascade_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """A real uvicorn server on a real port, serving the real app, in a background thread."""

    url: str
    admin_token: str
    database_url: str
    data_dir: Path
    _server: uvicorn.Server
    _thread: threading.Thread
    context: Any = None  # the server's services context (read it from the test's thread only to look)
    signals: Any = None  # PostgreSQL: its ``ReplicaSignals``

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)

    def client(self) -> httpx2.Client:
        """An HTTP client authenticated as the server's admin."""
        return httpx2.Client(base_url=self.url, headers={"Authorization": f"token {self.admin_token}"}, timeout=30)


def start_server(
    database_url: str,
    data_dir: Path,
    *,
    max_body_bytes: int = 1024 * 1024,
    sweep_seconds: float = 0.5,
    **config_overrides: object,
) -> LiveServer:
    """``sweep_seconds``: how often the lease sweeper runs (it also ends cascades an advance left behind; a
    test of the advance itself sets it beyond the test's own time limit)."""
    from stackcascade.config import Config
    from stackcascade.server import LocalPool, _AnnouncingServer, prepare, sweep_leases
    from stackcascade.services.replica_signals import ReplicaSignals
    from stackcascade.web.app import build_app
    from stackcascade.webhooks.dispatcher import Dispatcher

    port = int(config_overrides.pop("port", 0)) or free_port()  # a given port: a restart on the same address
    admin = "csc_test_admin_" + uuid.uuid4().hex
    config_overrides.setdefault("runners", 0)
    config = Config(data_dir=data_dir, database_url=database_url, port=port, admin_token=admin, **config_overrides)  # type: ignore[arg-type]
    ready = threading.Event()
    holder: dict[str, Any] = {}
    failure: list[BaseException] = []

    def run() -> None:
        async def main() -> None:
            ctx, _, _ = await prepare(config)
            holder["context"] = ctx
            app = build_app(ctx, max_body_bytes=max_body_bytes)
            pool = LocalPool(ctx, app, config)

            async def on_listening() -> None:
                return None

            def on_shutdown() -> None:  # as `cascade serve` does: open long polls answer at once
                pool.stop_claiming()
                ctx.stop_waiting()

            server = _AnnouncingServer(
                uvicorn.Config(
                    app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=3
                ),
                on_listening,
                on_shutdown,
            )
            server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
            holder["server"] = server
            await pool.start()
            stop_sweeping = asyncio.Event()
            sweeper = asyncio.create_task(sweep_leases(ctx, sweep_seconds, stop_sweeping))
            stop_dispatch = asyncio.Event()
            dispatcher = asyncio.create_task(Dispatcher(ctx, ctx.webhook_client).run(stop_dispatch))  # type: ignore[arg-type]
            stop_signals = asyncio.Event()
            holder["signals"] = ReplicaSignals(ctx) if ctx.db.is_postgres else None
            signals = asyncio.create_task(
                holder["signals"].run(stop_signals) if holder["signals"] else asyncio.sleep(0)
            )
            task = asyncio.create_task(server.serve())
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            ready.set()
            await task
            await pool.stop()
            stop_signals.set()
            await signals
            stop_dispatch.set()
            await dispatcher
            stop_sweeping.set()
            await sweeper
            await ctx.settle()
            await ctx.db.dispose()

        try:
            asyncio.run(main())
        except BaseException as exc:
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name=f"live-server-{port}", daemon=True)
    thread.start()
    if not ready.wait(60) or failure:
        raise RuntimeError(f"test server did not start: {failure!r}")
    url = f"http://127.0.0.1:{port}"
    return LiveServer(
        url, admin, database_url, data_dir, holder["server"], thread, holder["context"], holder["signals"]
    )


@contextmanager
def serving(kind: str, data_dir: Path, **config_overrides: object) -> Iterator[LiveServer]:
    """A real server (``start_server``) on a fresh database of ``kind``, stopped and its database dropped
    afterwards: what the server fixtures yield."""
    with fresh_database(kind, data_dir) as url:
        server = start_server(url, data_dir, **config_overrides)
        try:
            yield server
        finally:
            server.stop()


def assert_error(response: httpx2.Response, code: int, message: str | None = None) -> str:
    """Every API error is exactly ``{"code": N, "message": "..."}`` as JSON; returns the message."""
    assert response.status_code == code, response.text
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    assert isinstance(payload, dict)
    assert payload.keys() == {"code", "message"}
    assert payload["code"] == code
    assert isinstance(payload["message"], str) and payload["message"]
    if message is not None:
        assert payload["message"] == message
    return str(payload["message"])


@dataclass
class RoundTrips:
    count: int = 0


@contextmanager
def counting_round_trips() -> Iterator[RoundTrips]:
    """Counts how often psycopg waits for the server's answers, as if no answer ever arrived early.

    psycopg asks the event loop to wake it when an answer it needs has not been read yet. While it sends,
    it also reads answers that are already there; whether one is, depends on how fast the server was, so
    counting only the event loop's wake-ups would give 0 on a quick server where 1 is meant. Here the look
    psycopg takes while sending never sees an answer: every answer is read by a wait, and the count is the
    number of round trips, whatever the timing."""
    loop = asyncio.get_running_loop()
    waits = RoundTrips()
    add_reader = loop.add_reader
    ready = psycopg.waiting._ready

    def counting(fd: Any, callback: Any, *args: Any) -> Any:
        waits.count += 1
        return add_reader(fd, callback, *args)

    def writable_only(fileno: int, wait: Any) -> int:
        return ready(fileno, wait) & ~psycopg.waiting.READY_R

    loop.add_reader = counting  # type: ignore[method-assign]
    psycopg.waiting._ready = writable_only
    try:
        yield waits
    finally:
        psycopg.waiting._ready = ready
        del loop.add_reader
