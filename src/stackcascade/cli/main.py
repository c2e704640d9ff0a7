"""The ``cascade`` command line. Everything but ``serve`` and ``admin-token`` talks to the API over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated

import typer

from stackcascade import __version__
from stackcascade.cli import deploy, deployments, login, logs, outputs, runner_command, settings, stacks, tokens
from stackcascade.config import DEFAULT_PORT, Config

app = typer.Typer(
    name="cascade", help="stackcascade: keep dependent infrastructure stacks up to date.", no_args_is_help=True
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
    from stackcascade.server import serve as run_server

    config = Config(data_dir=data_dir, database_url=database_url, host=host, port=port, runners=runners, demo=demo)
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C during shutdown
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run_server(config))


@app.command("admin-token")
def admin_token(
    data_dir: DataDir = Path(".cascade"),
    database_url: DatabaseUrl = None,
    name: Annotated[str, typer.Option(help="A name to recognise the token by.")] = "admin (recovered)",
) -> None:
    """Mint a new admin token straight in the database (recovery on the server's machine)."""
    from stackcascade.server import build_context
    from stackcascade.services import tokens

    ctx = build_context(Config(data_dir=data_dir, database_url=database_url))

    async def _mint() -> str:
        await asyncio.to_thread(ctx.db.migrate)
        try:
            return await tokens.issue_admin(ctx, name)
        finally:
            await ctx.db.dispose()

    typer.echo(asyncio.run(_mint()))


app.command("login")(login.login)
app.command("logout")(login.logout)
app.add_typer(stacks.app, name="stack")
app.add_typer(settings.app, name="settings")
app.command("deploy")(deploy.deploy)
app.add_typer(deployments.app, name="deployments")
app.command("cancel")(deploy.cancel)
app.command("logs")(logs.logs)
app.command("outputs")(outputs.outputs)
app.add_typer(tokens.app, name="token")
app.command("runner")(runner_command.runner)


def main() -> None:
    app()
