"""``cascade runner``: run deployments on this machine for a server elsewhere (HTTP only)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from stackcascade.runner.agent import Runner, default_runner_name
from stackcascade.runner.client import RunnerClient


def runner(
    server: Annotated[str, typer.Option("--server", envvar="CASCADE_API_URL", help="The stackcascade server URL.")],
    token: Annotated[
        str,
        typer.Option("--token", envvar="CASCADE_RUNNER_TOKEN", help="A runner token (cascade token create --runner)."),
    ],
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=64, help="Deployments run at once.")] = 1,
    work_dir: Annotated[Path, typer.Option("--work-dir", help="Workspaces (cached git checkouts) live here.")] = Path(
        ".cascade-runner"
    ),
    name: Annotated[str | None, typer.Option("--name", help="How this runner shows up in leases.")] = None,
    grace: Annotated[
        float, typer.Option("--grace", min=0, help="Seconds a running deployment gets to finish on SIGTERM.")
    ] = 60.0,
) -> None:
    """Claim and run deployments until SIGTERM/SIGINT; then finish (or cancel after --grace) and exit."""
    typer.echo(
        f"runner {name or 'started'}: serving {server} with {concurrency} slot(s), workspaces in {work_dir.resolve()}"
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        agent = Runner(
            lambda runner_id: RunnerClient(server, token, runner_id),
            work_dir=work_dir,
            concurrency=concurrency,
            name=name or default_runner_name(),
            api_url=server,
            grace_seconds=grace,
        )
        await agent.run(stop)
        typer.echo(f"runner stopped after {agent.completed} deployment(s)")

    asyncio.run(main())
