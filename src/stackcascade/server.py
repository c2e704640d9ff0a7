"""``cascade serve``: migrate, bootstrap the admin token, seed the demo, serve HTTP, sweep leases."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from stackcascade.config import Config
from stackcascade.services import cascades, demo, local_pool, queue, tokens
from stackcascade.services.context import Context
from stackcascade.services.secrets import SecretBox, load_or_create_key
from stackcascade.store.db import Database
from stackcascade.web.app import build_app

if TYPE_CHECKING:  # the runner and httpx2 are imported only when `--runners` starts a local pool
    from fastapi import FastAPI

    from stackcascade.runner.agent import Runner

log = logging.getLogger("stackcascade.server")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "demo"


def build_context(config: Config) -> Context:
    from stackcascade.domain.backoff import RetryPolicy, from_text
    from stackcascade.domain.errors import InvalidInput
    from stackcascade.domain.targets import parse_allowed_networks
    from stackcascade.webhooks.sender import HttpSender

    try:
        allowed = parse_allowed_networks(config.webhook_allow_networks)
        retry = from_text(config.webhook_retry) if config.webhook_retry else RetryPolicy()
    except InvalidInput as exc:
        raise SystemExit(f"webhook configuration: {exc.message}") from None
    db = Database(config.resolved_database_url())
    box = SecretBox(load_or_create_key(config.secret_key, config.data_dir))
    ctx = Context(
        db=db,
        secrets=box,
        public_url=config.resolved_public_url(),
        org_concurrency=config.org_concurrency,
        lease_seconds=float(config.lease_seconds),
        webhook_client=HttpSender(allowed),
        webhook_retry=retry,
    )
    ctx.claims.poll_seconds = config.claim_poll_seconds
    return ctx


def write_demo_repo(path: Path, examples: Path = EXAMPLES) -> str:
    """A real git repository made from ``examples/demo``: one command-runtime project per stack."""
    if not (path / ".git").exists():
        if not examples.is_dir():
            raise SystemExit(f"--demo needs the demo projects in {examples} (run from a source checkout)")
        git = shutil.which("git")
        if git is None:
            raise SystemExit("--demo needs git on PATH to create its example repository")
        shutil.copytree(examples, path, dirs_exist_ok=True)
        identity = ["-c", "user.name=stackcascade demo", "-c", "user.email=demo@stackcascade.invalid"]
        for args in (["init", "-q", "-b", "main"], ["add", "."], [*identity, "commit", "-q", "-m", "demo projects"]):
            subprocess.run([git, *args], cwd=path, check=True, capture_output=True)  # noqa: S603 - fixed arguments
    return path.resolve().as_uri()


async def sweep_leases(ctx: Context, every: float, stop: asyncio.Event) -> None:
    """Every ``every`` seconds until ``stop``: it is stopped between sweeps, never cancelled inside one
    (a cancel in the middle of a statement can leave a connection behind when the pool is disposed)."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return
        try:
            lost = await queue.expire_leases(ctx)
            await cascades.reconcile(ctx)  # members superseded while queued, anything a crash left behind
        except Exception as exc:  # the sweeper must survive a database hiccup
            log.warning("lease sweep failed: %s", type(exc).__name__)
            continue
        for row in lost:
            log.warning("deployment %s failed: runner lost", row.id)


async def prepare(config: Config, *, mint_admin: bool = True) -> tuple[Context, str | None, bool]:
    """Everything before the first request: migrations, admin token, demo data.

    ``mint_admin=False`` leaves a first admin token to be minted later (``cascade serve`` mints it once
    it listens, so a start that cannot bind its port does not use up the token it would have shown);
    a configured token (``CASCADE_ADMIN_TOKEN``) is stored either way, so it works from the first request.
    """
    ctx = build_context(config)
    await asyncio.to_thread(ctx.db.migrate)
    new_token = None
    if mint_admin or config.admin_token:
        new_token = await tokens.ensure_admin(ctx, config.admin_token)
    seeded = False
    if config.demo:
        repo = await asyncio.to_thread(write_demo_repo, config.data_dir / "demo-repo")
        seeded = await demo.seed(ctx, repo)
    return ctx, new_token, seeded


class LocalPool:
    """``--runners N``: the ordinary runner code, talking to this process's app in-process."""

    def __init__(self, ctx: Context, app: FastAPI, config: Config) -> None:
        self._ctx = ctx
        self._app = app
        self._config = config
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._token_id: str | None = None
        self._warnings: set[asyncio.Task[None]] = set()
        self.runner: Runner | None = None

    async def start(self) -> None:
        if self._config.runners <= 0:
            return
        issued = await tokens.issue_runner(self._ctx, f"local-pool {socket.gethostname()}:{self._config.port}")
        self._token_id = issued.id
        import httpx2

        from stackcascade.runner.agent import Runner
        from stackcascade.runner.client import RunnerClient

        transport = httpx2.ASGITransport(app=self._app)

        def make_client(runner_id: str) -> RunnerClient:
            return RunnerClient("http://stackcascade.local", issued.value, runner_id, transport=transport)

        self.runner = Runner(
            make_client,
            work_dir=self._config.data_dir / "runner",
            concurrency=self._config.runners,
            name=f"local-{socket.gethostname()}",
            api_url=self._ctx.public_url,
            poll_seconds=5.0,
            grace_seconds=self._config.runner_grace_seconds,
        )
        self._task = asyncio.create_task(self.runner.run(self._stop))
        self._ctx.db.on_orgs_created = self._orgs_created

    def _orgs_created(self, _orgs: frozenset[str]) -> None:
        """Called after a commit that created orgs: a second org now shares the pool, so warn (logged)."""
        task = asyncio.create_task(self._warn_if_shared())
        self._warnings.add(task)
        task.add_done_callback(self._warnings.discard)

    async def _warn_if_shared(self) -> None:
        try:
            warning = await local_pool.shared_pool_warning(self._ctx)
        except Exception as exc:  # a warning that cannot be worked out must not break anything else
            log.warning("could not count the organizations sharing the local pool: %s", type(exc).__name__)
            return
        if warning:
            log.warning("%s", warning)

    async def startup_warning(self) -> str | None:
        """For the start-up banner: the same warning when orgs already share the pool."""
        return None if self._task is None else await local_pool.shared_pool_warning(self._ctx)

    def stop_claiming(self) -> None:
        """Shutdown begins: the slots take no new work (what they run goes on until ``stop``). Set before
        the long-polling claims are answered, or the slots would ask again at once, again and again."""
        self._stop.set()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._ctx.db.on_orgs_created = None
        if self._warnings:  # a warning being worked out is still logged
            await asyncio.wait(set(self._warnings))
        self._stop.set()
        self._ctx.work.close()  # the slots' long-polling claims return now instead of at their timeout
        await self._task
        if self._token_id:
            await tokens.revoke_by_id(self._ctx, self._token_id)


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that runs ``on_listening`` once its port is bound and listening, and
    ``on_shutdown`` when its shutdown begins (a signal).

    A start whose port is taken fails inside ``startup`` (uvicorn logs the error and exits with 3)
    before ``on_listening`` runs: nothing is announced and no first admin token is minted.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        on_listening: Callable[[], Awaitable[None]],
        on_shutdown: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(config)
        self._on_listening = on_listening
        self._on_shutdown = on_shutdown

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            await self._on_listening()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn waits for open requests (``timeout_graceful_shutdown``), then cancels them: a long poll
        # would get a 500 and log a traceback. ``on_shutdown`` answers them now. Their answers go out no
        # earlier than the first await in uvicorn's shutdown, which comes after it stopped listening and
        # marked every open connection to close after its response: a runner's next call cannot come
        # back on the same connection to a server on its way out.
        self._on_shutdown()
        await super().shutdown(sockets=sockets)


async def serve(config: Config) -> None:
    ctx, _, seeded = await prepare(config, mint_admin=False)
    app = build_app(ctx, max_body_bytes=config.max_body_bytes)

    pool = LocalPool(ctx, app, config)

    async def on_listening() -> None:
        new_token = None if config.admin_token else await tokens.ensure_admin(ctx, None)
        _announce(config, ctx, new_token, seeded, await pool.startup_warning())

    def on_shutdown() -> None:
        pool.stop_claiming()  # first, or its slots would claim again as soon as their claims are answered
        ctx.stop_waiting()  # long polls answer "no work" (204), live streams end

    server = _AnnouncingServer(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
        ),
        on_listening,
        on_shutdown,
    )
    stop_sweeping = asyncio.Event()
    sweeper = asyncio.create_task(sweep_leases(ctx, max(1.0, min(5.0, ctx.lease_seconds / 4)), stop_sweeping))
    from stackcascade.webhooks.dispatcher import Dispatcher

    stop_dispatch = asyncio.Event()
    dispatcher = asyncio.create_task(Dispatcher(ctx, ctx.webhook_client).run(stop_dispatch))  # type: ignore[arg-type]
    stop_signals = asyncio.Event()
    signals = asyncio.create_task(replica_signals(ctx, stop_signals))
    await pool.start()
    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal to whatever handler
    # was installed before it; a no-op handler lets us finish our own cleanup and exit with status 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    try:
        await server.serve()
    finally:
        await pool.stop()
        stop_signals.set()
        await signals
        stop_dispatch.set()
        await dispatcher
        if hasattr(ctx.webhook_client, "close"):
            await ctx.webhook_client.close()
        stop_sweeping.set()
        await sweeper
        await ctx.settle()
        await ctx.db.dispose()
        print("stackcascade stopped", flush=True)


async def replica_signals(ctx: Context, stop: asyncio.Event) -> None:
    """PostgreSQL: wake the claimers of the other replicas sharing the database (``replica_signals``)."""
    if ctx.db.is_postgres:
        from stackcascade.services.replica_signals import ReplicaSignals

        await ReplicaSignals(ctx).run(stop)


def _announce(config: Config, ctx: Context, new_token: str | None, seeded: bool, warning: str | None) -> None:
    where = "PostgreSQL" if ctx.db.is_postgres else f"SQLite in {config.data_dir.resolve()}"
    lines = [
        f"stackcascade listening on {ctx.public_url}  (web console: {ctx.public_url}/  API docs: {ctx.public_url}/api/docs)",
        f"database: {where}",
        f"local runners: {config.runners}" + ("" if config.runners else " (deployments wait for a `cascade runner`)"),
    ]
    if seeded:
        lines.append("demo organization 'demo' seeded: network, database, cluster, app (stack 'prod')")
    elif config.demo:
        lines.append("demo organization 'demo' is already there")
    if new_token:
        lines += [
            "admin token (shown once, only its hash is stored):",
            f"  {new_token}",
            f"  cascade login --server {ctx.public_url} --token {new_token}",
        ]
    elif config.admin_token:
        lines.append("admin token: the one in CASCADE_ADMIN_TOKEN")
    else:
        lines.append("admin token: printed at first start; `cascade admin-token` mints another")
    if warning:
        lines.append(warning)
    print("\n".join(lines), flush=True)
