"""The ``cascade`` command line. Everything but ``serve`` and ``admin-token`` talks to the API over HTTP.

The other commands live in their own modules, which import Rich, httpx2 and the runner. They are imported
only when the command is run (or listed by ``cascade --help``), so ``cascade serve`` starts without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import sys
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup

from stackcascade import __version__
from stackcascade.config import DEFAULT_PORT, Config

if TYPE_CHECKING:
    from typer._click import Command, Context  # the click that Typer ships and builds its commands from

# Command name -> (module in stackcascade.cli, attribute): a function becomes a command, a typer.Typer a group.
# In the order they are listed by `cascade --help`: commands first, then groups, as Typer lists them.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "login": ("login", "login"),
    "logout": ("login", "logout"),
    "deploy": ("deploy", "deploy"),
    "cancel": ("deploy", "cancel"),
    "logs": ("logs", "logs"),
    "outputs": ("outputs", "outputs"),
    "runner": ("runner_command", "runner"),
    "plan": ("cascades", "plan"),
    "graph": ("graph", "graph"),
    "notify": ("cascades", "notify"),
    "stack": ("stacks", "app"),
    "settings": ("settings", "app"),
    "deployments": ("deployments", "app"),
    "token": ("tokens", "app"),
    "webhook": ("webhooks", "app"),
    "autodeploy": ("autodeploy", "app"),
    "cascade": ("cascades", "app"),
}


def _load_command(name: str) -> Command:
    """Import a lazily registered command's module and build its click command as Typer would have."""
    module, attribute = LAZY_COMMANDS[name]
    target = getattr(importlib.import_module(f"stackcascade.cli.{module}"), attribute)
    holder = typer.Typer()  # registers the target exactly as `app.command(name)` / `app.add_typer` would
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
        return typer.main.get_group_from_info(
            holder.registered_groups[0],
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
            suggest_commands=app.suggest_commands,
        )
    holder.command(name)(target)
    return typer.main.get_command_from_info(
        holder.registered_commands[0],
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
    )


class _Commands(MutableMapping[str, "Command"]):
    """The root group's commands: the eager ones, then the lazy ones, each built on first access."""

    def __init__(self, eager: MutableMapping[str, Command]) -> None:
        self._loaded = dict(eager)
        self._order = [*eager, *(name for name in LAZY_COMMANDS if name not in eager)]

    def __getitem__(self, name: str) -> Command:
        if name not in self._loaded:
            if name not in LAZY_COMMANDS:
                raise KeyError(name)
            self._loaded[name] = _load_command(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        if name not in self._order:
            self._order.append(name)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._order.remove(name)
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._order


class LazyGroup(TyperGroup):
    """Typer's group, with the subcommands of ``LAZY_COMMANDS`` imported on demand."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands(self.commands)

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)  # names only: listing does not import anything


app = typer.Typer(
    name="cascade",
    help="stackcascade: keep dependent infrastructure stacks up to date.",
    no_args_is_help=True,
    cls=LazyGroup,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stackcascade {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """stackcascade command line."""


DataDir = Annotated[
    Path, typer.Option("--data-dir", envvar="CASCADE_DATA_DIR", help="Where the embedded SQLite database and key live.")
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar="CASCADE_DATABASE_URL", help="postgresql://... to use PostgreSQL."),
]


class _NoImportsIn:
    """A ``sys.meta_path`` entry that refuses every import made by one thread.

    Two threads importing at once can deadlock on modules that import each other (CPython then raises in
    one of them), so the early schema upgrade below runs only with modules that were imported before.
    """

    def __init__(self, thread: threading.Thread) -> None:
        self._thread = thread

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if threading.current_thread() is self._thread:
            raise ImportError(f"no imports during the early schema upgrade ({name})", name=name)


@contextlib.contextmanager
def _schema_upgrade_meanwhile(config: Config) -> Iterator[None]:
    """Bring the database to the current schema in a thread while the caller imports the server.

    The import is about a second of CPU in this thread; creating the tables of a fresh database is
    mostly waiting for the database (PostgreSQL runs the DDL in its own process). ``prepare()`` still
    migrates before serving, and then finds the schema at head. When the thread fails for any reason,
    for instance because an older schema needs Alembic, which is not imported yet, ``prepare()`` does
    the whole upgrade as before and reports its errors.
    """
    from stackcascade.store.db import Database

    for module in ("stackcascade.store.migrate", "stackcascade.store.schema"):  # what the upgrade imports
        importlib.import_module(module)
    try:
        database = Database(config.resolved_database_url())
    except Exception:  # a bad URL or data dir: prepare() reports it
        yield
        return
    thread = threading.Thread(target=_upgrade_quietly, args=(database,), name="schema-upgrade", daemon=True)
    guard = _NoImportsIn(thread)
    sys.meta_path.insert(0, guard)
    try:
        thread.start()
        yield
    finally:
        thread.join()
        sys.meta_path.remove(guard)


def _upgrade_quietly(database: Any) -> None:
    with contextlib.suppress(Exception):
        database.migrate()


@app.command()
def serve(
    data_dir: DataDir = Path(".cascade"),
    database_url: DatabaseUrl = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    runners: Annotated[int, typer.Option("--runners", min=0, help="Local runner pool size.")] = 2,
    demo: Annotated[bool, typer.Option("--demo", help="Seed the example org 'demo'.")] = False,
) -> None:
    """Run the server (API, console, local runners)."""
    config = Config(data_dir=data_dir, database_url=database_url, host=host, port=port, runners=runners, demo=demo)
    # Importing the server creates about 160,000 objects that live as long as the process. Collecting
    # garbage while they are created only costs time (about 8 % of start-up), so the collector waits,
    # and afterwards they are kept out of every later collection.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with _schema_upgrade_meanwhile(config):
            from stackcascade.server import serve as run_server
    finally:
        gc.freeze()
        if gc_was_enabled:
            gc.enable()

    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C during shutdown
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run_server(config))


@app.command()
def demo(
    data_dir: DataDir = Path(".cascade"),
    database_url: DatabaseUrl = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    runners: Annotated[int, typer.Option("--runners", min=0, help="Local runner pool size.")] = 2,
) -> None:
    """Run the server with the example org 'demo' (what `cascade serve --demo` does): the diamond
    network -> database, cluster -> app from a git repository in the data dir. Then try
    `cascade deploy demo/network/prod --follow`."""
    serve(data_dir=data_dir, database_url=database_url, host=host, port=port, runners=runners, demo=True)


@app.command("admin-token")
def admin_token(
    data_dir: DataDir = Path(".cascade"),
    database_url: DatabaseUrl = None,
    name: Annotated[str, typer.Option(help="A name to recognise the token by.")] = "admin (recovered)",
) -> None:
    """Mint a new admin token straight in the database (recovery on the server's machine)."""
    from stackcascade.cli.errors import fail
    from stackcascade.server import build_context
    from stackcascade.services import tokens
    from stackcascade.store.db import has_schema

    config = Config(data_dir=data_dir, database_url=database_url)
    # A token minted into a database no server uses works nowhere: never make one up (a typo, or the wrong
    # directory for the default ./.cascade).
    try:
        found = has_schema(config.resolved_database_url())
    except Exception as exc:  # unreachable or refusing: say which database, never the password
        raise fail(f"cannot read the database: {type(exc).__name__}: check --database-url") from None
    if not found:
        where = "the database given by --database-url" if database_url else f"{data_dir / 'cascade.db'}"
        raise fail(
            f"there is no stackcascade database at {where}: give the --data-dir (or --database-url) "
            "that `cascade serve` uses; nothing was created"
        )
    ctx = build_context(config)

    async def _mint() -> str:
        await asyncio.to_thread(ctx.db.migrate)
        try:
            return await tokens.issue_admin(ctx, name)
        finally:
            await ctx.db.dispose()

    typer.echo(asyncio.run(_mint()))


def main() -> None:
    app()
