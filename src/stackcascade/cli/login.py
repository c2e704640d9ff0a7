"""``cascade login`` / ``logout``: check a token against the server, then keep it in the login file."""

from __future__ import annotations

from typing import Annotated

import typer

from stackcascade.cli import credentials
from stackcascade.cli.client import ApiClient
from stackcascade.cli.connection import normalise_server
from stackcascade.cli.errors import CliError, reports_errors


@reports_errors
def login(
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            metavar="URL",
            envvar="CASCADE_API_URL",
            help="Server URL, e.g. http://127.0.0.1:8080.",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str,
        typer.Option(
            "--token",
            metavar="TOKEN",
            envvar="CASCADE_TOKEN",
            prompt="API token",
            hide_input=True,
            help="API token (asked for, hidden, when not given).",
            show_default=False,
        ),
    ] = "",
    org: Annotated[
        str | None,
        typer.Option(
            "--org",
            metavar="ORG",
            envvar="CASCADE_ORG",
            help="Default organization for project/stack references.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check the token against the server and save both for later commands (file mode 0600)."""
    saved = credentials.load() if server is None else None
    if server is None and saved is None:
        raise CliError("give the server: cascade login --server URL --token TOKEN")
    url = normalise_server(server or (saved.server if saved else ""))
    if not token.strip():
        raise CliError("the token is empty")
    with ApiClient(url, token.strip()) as api:
        api.check_access(org)
    path = credentials.save(credentials.Credentials(server=url, token=token.strip(), org=org or None))
    where = f" (default organization {org})" if org else ""
    typer.echo(f"Logged in to {url}{where}; credentials saved in {path}")


@reports_errors
def logout() -> None:
    """Forget the saved server and token."""
    path = credentials.credentials_path()
    if credentials.remove():
        typer.echo(f"Logged out: removed {path}")
    else:
        typer.echo("Not logged in: nothing to remove")
