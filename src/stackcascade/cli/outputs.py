"""``cascade outputs``: a stack's outputs, as a table or one value for scripts.

Meant to work inside a deployment too, where CASCADE_API_URL, CASCADE_TOKEN (the deployment's own token)
and CASCADE_ORG are set: with a server, a token and an ``org/project/stack`` reference nothing else is read
(not even the login file).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from stackcascade.cli.client import ApiClient, Json, api_path
from stackcascade.cli.connection import (
    Connection,
    OrgOption,
    ServerOption,
    StackArgument,
    TokenOption,
    connect,
    normalise_server,
)
from stackcascade.cli.errors import CliError, reports_errors
from stackcascade.cli.output import print_json, print_table
from stackcascade.cli.refs import StackRef

SECRET_MARK = "secret"  # noqa: S105 - a column label, not a password


def connect_to_stack(stack: str, server: str | None, token: str | None, org: str | None) -> tuple[Connection, StackRef]:
    """The connection and the stack; a full reference with a server and a token needs no login file."""
    if server and token and stack.count("/") == 2:
        conn = Connection(server=normalise_server(server), token=token, org=org or None)
    else:
        conn = connect(server, token, org)
    return conn, conn.stack(stack)


def read_outputs(api: ApiClient, ref: StackRef, *, show_secrets: bool) -> Json:
    path = api_path("stacks", ref.org, ref.project, ref.stack, "outputs")
    body = api.request("GET", path, params={"showSecrets": "true" if show_secrets else None})
    if not isinstance(body, dict) or not isinstance(body.get("outputs") or {}, dict):
        raise CliError(f"unexpected answer from {api.server}{path}: expected {{'outputs': {{...}}}}")
    return body


def raw(value: Any) -> str:
    """A string as it is (no quotes), anything else as compact JSON: what a shell script wants from ``$(...)``."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@reports_errors
def outputs(
    stack: StackArgument,
    key: Annotated[
        str | None,
        typer.Argument(metavar="KEY", help="Print only this output's value (raw: strings without quotes)."),
    ] = None,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="Show secret values (members of the org, and its deployments).")
    ] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the API's JSON answer (with KEY: that value as JSON).")
    ] = False,
) -> None:
    """Show a stack's outputs (secret ones masked unless --show-secrets), or the value of one of them."""
    conn, ref = connect_to_stack(stack, server, token, org)
    with conn.client() as api:
        body = read_outputs(api, ref, show_secrets=show_secrets)
    values: dict[str, Any] = body.get("outputs") or {}
    secret = {str(name) for name in body.get("secretOutputs") or []}
    if key is None:
        if as_json:
            print_json(body)
            return
        rows = [(name, raw(value), SECRET_MARK if name in secret else "") for name, value in sorted(values.items())]
        print_table(("NAME", "VALUE", "SECRET"), rows, empty=f"{ref} has no outputs.")
        return
    if key not in values:
        known = ", ".join(sorted(values)) or "none"
        raise CliError(f"{ref} has no output {key!r}; its outputs: {known}")
    if key in secret and not show_secrets:
        raise CliError(f"output {key!r} of {ref} is secret: pass --show-secrets to print its value")
    typer.echo(json.dumps(values[key], ensure_ascii=False) if as_json else raw(values[key]))
