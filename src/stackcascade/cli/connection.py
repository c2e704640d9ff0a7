"""Which server, token and default org a command uses: options, then environment, then the login file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlsplit

import httpx2
import typer

from stackcascade.cli import credentials
from stackcascade.cli.client import ApiClient
from stackcascade.cli.errors import CliError
from stackcascade.cli.refs import StackRef, parse_stack_ref

_PANEL = "Connection"

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        envvar="CASCADE_API_URL",
        help="Server URL, e.g. http://127.0.0.1:8080 (default: the one saved by `cascade login`).",
        rich_help_panel=_PANEL,
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        envvar="CASCADE_TOKEN",
        help="API token (default: the one saved by `cascade login`).",
        rich_help_panel=_PANEL,
        show_default=False,
    ),
]
OrgOption = Annotated[
    str | None,
    typer.Option(
        "--org",
        metavar="ORG",
        envvar="CASCADE_ORG",
        help="Default organization, for project/stack references (default: the one saved by `cascade login`).",
        rich_help_panel=_PANEL,
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer and nothing else.")]
StackArgument = Annotated[
    str, typer.Argument(metavar="STACK", help="org/project/stack, or project/stack in the default org.")
]


def normalise_server(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash; anything else is refused before any request."""
    cleaned = url.strip().rstrip("/")
    try:
        parts = urlsplit(cleaned)
        valid = parts.scheme in {"http", "https"} and bool(parts.hostname) and not (parts.query or parts.fragment)
        if valid:
            _ = parts.port  # raises on a port that is not a number in range
            httpx2.URL(cleaned)
    except (ValueError, httpx2.InvalidURL):
        valid = False
    if not valid:
        raise CliError(f"invalid server URL {url!r}: use http://host:port or https://host")
    return cleaned


@dataclass(frozen=True, slots=True)
class Connection:
    server: str
    token: str = field(repr=False)
    org: str | None = None

    def client(self) -> ApiClient:
        return ApiClient(self.server, self.token)

    def stack(self, text: str) -> StackRef:
        return parse_stack_ref(text, self.org)

    def require_org(self) -> str:
        if not self.org:
            raise CliError("no organization: pass --org, set CASCADE_ORG or run `cascade login --org ORG`")
        return self.org


def connect(server: str | None, token: str | None, org: str | None = None) -> Connection:
    """Resolve the connection; the saved token is only ever sent to the server it was saved for."""
    saved = None if server and token and org else credentials.load()  # the file only when something is missing
    if server:
        url = normalise_server(server)
    elif saved is not None:
        url = normalise_server(saved.server)
    else:
        raise CliError("no server given: pass --server URL, set CASCADE_API_URL, or run `cascade login`")
    same_server = saved is not None and normalise_server(saved.server) == url
    if not token:
        if saved is None:
            raise CliError(f"no token for {url}: pass --token, set CASCADE_TOKEN, or run `cascade login`")
        if not same_server:
            raise CliError(
                f"no token for {url}: the saved login is for {saved.server}; pass --token, set CASCADE_TOKEN, "
                f"or run `cascade login --server {url}`"
            )
        token = saved.token
    if not org and same_server and saved is not None:
        org = saved.org
    return Connection(server=url, token=token, org=org or None)
