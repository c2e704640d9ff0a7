"""``cascade deployments ls|show``: read a stack's or an org's deployments."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from stackcascade.cli.connection import JsonOption, OrgOption, ServerOption, StackArgument, TokenOption, connect
from stackcascade.cli.documents import MASK
from stackcascade.cli.errors import reports_errors
from stackcascade.cli.output import print_details, print_json, print_table, timestamp

app = typer.Typer(help="List and inspect deployments.", no_args_is_help=True)


@app.command("ls")
@reports_errors
def list_deployments(
    stack: Annotated[
        str | None,
        typer.Argument(metavar="STACK", help="org/project/stack or project/stack; omit for the whole organization."),
    ] = None,
    page: Annotated[int | None, typer.Option("--page", help="Page number, from 1.", show_default=False)] = None,
    page_size: Annotated[
        int | None, typer.Option("--page-size", help="Deployments per page (1-100, default 10).", show_default=False)
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """List deployments, newest first: of one stack, or of the organization."""
    conn = connect(server, token, org)
    ref = conn.stack(stack) if stack else None
    owner = conn.require_org() if ref is None else None
    with conn.client() as api:
        listing = api.list_deployments(ref=ref, org=owner, page=page, page_size=page_size)
    if as_json:
        print_json(listing)
        return
    deployments: list[dict[str, Any]] = listing.get("deployments") or []
    rows = [
        (
            f"{d.get('projectName')}/{d.get('stackName')}",
            d.get("version"),
            d.get("pulumiOperation"),
            d.get("status"),
            d.get("initiator"),
            timestamp(d.get("created")),
            d.get("id"),
            d.get("reason"),
        )
        for d in deployments
    ]
    print_table(
        ("STACK", "VERSION", "OPERATION", "STATUS", "INITIATOR", "CREATED", "ID", "REASON"),
        rows,
        empty="No deployments.",
    )
    total = listing.get("total")
    if isinstance(total, int) and total > len(deployments):
        typer.echo(f"Page {page or 1}: {len(deployments)} of {total} deployments; see --page and --page-size")


@app.command("show")
@reports_errors
def show(
    stack: StackArgument,
    deployment: Annotated[str, typer.Argument(metavar="ID_OR_VERSION", help="A deployment id, or its version number.")],
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one deployment, by id or by version."""
    conn = connect(server, token, org)
    ref = conn.stack(stack)
    with conn.client() as api:
        if deployment.isascii() and deployment.isdigit():  # "²" is a digit to str.isdigit
            found = api.get_deployment_version(ref, int(deployment))
        else:
            found = api.get_deployment(ref, deployment)
    if as_json:
        print_json(found)
        return
    configuration = found.get("configuration") or {}
    git = (configuration.get("source") or {}).get("git") or {}
    pairs: list[tuple[str, object]] = [
        ("id", found.get("id")),
        ("stack", ref),
        ("version", f"{found.get('version')} (latest {found.get('latestVersion')})"),
        ("operation", found.get("pulumiOperation")),
        ("status", found.get("status")),
        ("reason", found.get("reason")),
        ("initiator", found.get("initiator")),
        ("requested by", (found.get("requestedBy") or {}).get("name")),
        ("cascade", found.get("cascadeId")),
        ("created", timestamp(found.get("created"))),
        ("started", timestamp(found.get("started"))),
        ("finished", timestamp(found.get("finished"))),
        ("repository", git.get("repoURL")),
        ("branch", git.get("branch")),
        ("commit", git.get("commit")),
        ("directory", git.get("repoDir")),
    ]
    for variable in configuration.get("environmentVariables") or []:
        shown = MASK if variable.get("secret") else variable.get("value")
        pairs.append((f"env {variable.get('name')}", shown))
    pairs.append(("console", found.get("consoleUrl")))
    print_details(pairs)
