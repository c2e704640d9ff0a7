"""``cascade token create|ls|rm``: API tokens (admins and org admins only)."""

from __future__ import annotations

from typing import Annotated

import typer

from stackcascade.cli.connection import JsonOption, ServerOption, TokenOption, connect
from stackcascade.cli.errors import CliError, reports_errors
from stackcascade.cli.output import print_json, print_table, timestamp
from stackcascade.domain.roles import Role

app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)


@app.command("create")
@reports_errors
def create(
    org: Annotated[
        str | None,
        typer.Option(
            "--org", help="The token's organization; omit for an admin token of every organization.", show_default=False
        ),
    ] = None,
    role: Annotated[
        Role | None, typer.Option("--role", help="Role in the organization (default member).", show_default=False)
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="A name to recognise the token by.", show_default=False)
    ] = None,
    runner: Annotated[bool, typer.Option("--runner", help="A runner token: it can only run deployments.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a token. It is printed once, alone on stdout; only its hash is stored."""
    if runner and (org or role):
        raise CliError("a runner token has no organization or role: drop --org and --role")
    conn = connect(server, token)
    with conn.client() as api:
        issued = api.create_token(org=org, role=role.value if role else None, name=name, runner=runner)
    if as_json:
        print_json(issued)
        return
    scope = f"{issued.get('role')} in {issued.get('org')}" if issued.get("org") else f"{issued.get('kind')} token"
    typer.echo(
        f"Created token {issued.get('name')!r} ({scope}, id {issued.get('id')}); it is shown only once:", err=True
    )
    typer.echo(issued.get("token"))


@app.command("ls")
@reports_errors
def list_tokens(server: ServerOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """List tokens (never their values)."""
    conn = connect(server, token)
    with conn.client() as api:
        listing = api.list_tokens()
    if as_json:
        print_json(listing)
        return
    rows = [
        (
            t.get("id"),
            t.get("name"),
            t.get("kind"),
            t.get("org"),
            t.get("role"),
            timestamp(t.get("created")),
            timestamp(t.get("expires")),
        )
        for t in listing.get("tokens") or []
    ]
    print_table(("ID", "NAME", "KIND", "ORG", "ROLE", "CREATED", "EXPIRES"), rows, empty="No tokens.")


@app.command("rm")
@reports_errors
def revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id (from `cascade token ls`).")],
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a token: it stops working at once."""
    conn = connect(server, token)
    with conn.client() as api:
        api.revoke_token(token_id)
    if as_json:
        print_json({"id": token_id, "revoked": True})
    else:
        typer.echo(f"Revoked token {token_id}")
