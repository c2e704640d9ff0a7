"""``cascade stack create|ls|rm|gate``."""

from __future__ import annotations

from typing import Annotated

import typer

from stackcascade.cli.connection import JsonOption, OrgOption, ServerOption, StackArgument, TokenOption, connect
from stackcascade.cli.errors import reports_errors
from stackcascade.cli.output import print_json, print_table
from stackcascade.cli.refs import StackRef, parse_pairs

app = typer.Typer(help="Create, list and delete stacks; show or set their approval gate.", no_args_is_help=True)


@app.command("create")
@reports_errors
def create(
    stack: StackArgument,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", metavar="KEY=VALUE", help="A tag as KEY=VALUE; repeat for more.")
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a stack."""
    conn = connect(server, token, org)
    ref = conn.stack(stack)
    tags = parse_pairs(tag or [], "--tag")
    with conn.client() as api:
        created = api.create_stack(ref, tags)
    if as_json:
        print_json(created)
    else:
        typer.echo(f"Created stack {ref}")


@app.command("ls")
@reports_errors
def list_stacks(
    project: Annotated[str | None, typer.Option("--project", help="Only this project.")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the stacks of the organization (every organization the token sees when no org is set)."""
    conn = connect(server, token, org)
    with conn.client() as api:
        listing = api.list_stacks(org=conn.org, project=project)
    if as_json:
        print_json(listing)
        return
    rows = [
        (s.get("orgName"), s.get("projectName"), s.get("stackName"), (s.get("links") or {}).get("self"))
        for s in listing["stacks"]
    ]
    print_table(("ORG", "PROJECT", "STACK", "CONSOLE"), rows, empty="No stacks.")


@app.command("rm")
@reports_errors
def remove(
    stack: StackArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a stack with its settings and deployment history (refused while a deployment runs);
    --json: the stack as it was."""
    conn = connect(server, token, org)
    ref = conn.stack(stack)
    if not yes:  # with --json the question goes to stderr: stdout is JSON only
        typer.confirm(f"Delete stack {ref} with its settings and deployment history?", abort=True, err=as_json)
    with conn.client() as api:
        deleted = api.get_stack(ref) if as_json else None
        api.delete_stack(ref)
    if deleted is not None:
        print_json(deleted)
    else:
        typer.echo(f"Deleted stack {ref}")


def _gate_line(ref: StackRef, required: bool, *, changed: bool) -> str:
    now = " now" if changed else ""
    if required:
        return (
            f"Stack {ref}{now} requires approval: in a cascade it waits until approved "
            "(cascade cascade approve) or rejected"
        )
    return (
        f"Stack {ref}{now} does not require approval: in a cascade it runs once its upstreams are done "
        "(unless an edge into it requires approval)"
    )


@app.command("gate")
@reports_errors
def gate(
    stack: StackArgument,
    require_approval: Annotated[
        bool | None,
        typer.Option(
            "--require-approval/--no-require-approval",
            help="Set the gate: in every cascade the stack waits for an approval before it runs (or no longer does). "
            "Without either: show it.",
            show_default=False,
        ),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show or set the stack's approval gate (an Auto Deploy declaration that names the stack sets it too)."""
    conn = connect(server, token, org)
    ref = conn.stack(stack)
    with conn.client() as api:
        if require_approval is None:
            settings = api.get_cascade_settings(ref)
        else:
            settings = api.update_cascade_settings(ref, require_approval=require_approval)
    if as_json:
        print_json(settings)
    else:
        typer.echo(_gate_line(ref, bool(settings.get("requireApproval")), changed=require_approval is not None))
