"""``cascade cascade ls|show|approve|reject|retry``, ``cascade plan`` and ``cascade notify``.

A cascade belongs to an organization (``--org``, or the default org); its members are stacks of that
organization, named ``project/stack`` (or ``org/project/stack``, as everywhere else).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text
from rich.tree import Tree

from stackcascade.cli import follow as following
from stackcascade.cli.client import Json
from stackcascade.cli.connection import JsonOption, OrgOption, ServerOption, StackArgument, TokenOption
from stackcascade.cli.errors import CliError, reports_errors
from stackcascade.cli.options import connect_for_stack, connect_to_org
from stackcascade.cli.output import console, print_details, print_json, print_table, timestamp
from stackcascade.domain.cascade import CascadeStatus
from stackcascade.domain.deployments import Operation
from stackcascade.domain.webhook_events import OPERATION_EVENTS
from stackcascade.runner.runtimes import SECRET_PLACEHOLDER

app = typer.Typer(help="List and inspect cascades; approve, reject or retry their members.", no_args_is_help=True)

DEFAULT_LIMIT = 20
MAX_LIMIT = 100  # the server's largest pageSize for cascades
EventKind = StrEnum("EventKind", [(kind, kind) for kind in OPERATION_EVENTS])

CascadeIdArgument = Annotated[
    str, typer.Argument(metavar="ID", help="The cascade's id (from `cascade cascade ls` or a deployment).")
]
MemberArgument = Annotated[
    str,
    typer.Argument(
        metavar="STACK", help="The member: project/stack in the cascade's organization, or org/project/stack."
    ),
]


# --- cascades -----------------------------------------------------------------------------------------------


LimitOption = Annotated[
    int, typer.Option("--limit", min=1, max=MAX_LIMIT, help="How many cascades to show, newest first.")
]
StatusFilterOption = Annotated[
    list[CascadeStatus] | None,
    typer.Option("--status", help="Only cascades in this status (repeat for several).", show_default=False),
]


@app.command(
    "list", hidden=True, help="List the organization's cascades, newest first (the same as `ls`)."
)  # a hidden alias of the same function
@app.command("ls")
@reports_errors
def list_cascades(
    limit: LimitOption = DEFAULT_LIMIT,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    status: StatusFilterOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the organization's cascades, newest first (--status running: those still under way)."""
    conn, name = connect_to_org(server, token, org)
    wanted = ",".join(sorted({str(state.value) for state in status})) if status else None
    with conn.client() as api:
        listing = api.list_cascades(name, page_size=limit, status=wanted)
    if as_json:
        print_json(listing)
        return
    rows = [
        (
            c.get("id"),
            c.get("root"),
            c.get("operation"),
            c.get("status"),
            timestamp(c.get("created")),
            timestamp(c.get("finished")),
        )
        for c in listing.get("cascades") or []
    ]
    print_table(
        ("ID", "ROOT", "OPERATION", "STATUS", "CREATED", "FINISHED"),
        rows,
        empty=f"No {' or '.join(wanted.split(','))} cascades in organization {name}."
        if wanted
        else f"No cascades in organization {name}.",
    )


def print_cascade(cascade: Json, *, now: datetime | None = None, edges: bool = False) -> None:
    """The cascade's details, then its members (and with ``edges`` which edges fired); ``now``: the
    server's time when it answered."""
    print_details(
        [
            ("id", cascade.get("id")),
            ("root", cascade.get("root")),
            ("operation", cascade.get("operation")),
            ("status", cascade.get("status")),
            ("root deployment", cascade.get("rootDeploymentId") or "none (an external update event)"),
            ("created", timestamp(cascade.get("created"))),
            ("finished", timestamp(cascade.get("finished"))),
        ]
    )
    typer.echo()
    console().print(following.cascade_table(cascade, now=now))
    if edges:
        typer.echo()
        rows = [_edge_row(e) for e in _edges(cascade)]
        print_table(("UPSTREAM", "DOWNSTREAM", "FIRED", "WHY NOT"), rows, empty="No edges: the root alone.")


def _edges(cascade: Json) -> list[Json]:
    return [edge for edge in cascade.get("edges") or [] if isinstance(edge, dict)]


def _edge_row(edge: Json) -> tuple[object, ...]:
    fired = edge.get("fired")
    shown = "pending" if fired is None else "yes" if fired else "no"
    return (edge.get("upstream"), edge.get("downstream"), shown, edge.get("reason") or "")


@app.command("show")
@reports_errors
def show(
    cascade_id: CascadeIdArgument,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help=f"Show the members live until the cascade ends. {following.EXIT_CODES_HELP}"
        ),
    ] = False,
    timeout: following.FollowTimeoutOption = None,
    edges: Annotated[
        bool, typer.Option("--edges", help="Also list the cascade's edges: which fired, and why one did not.")
    ] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a cascade: its members wave by wave, with status, version, who approved and why one waits or was skipped."""
    following.require_follow(follow, timeout)
    if follow and as_json:
        raise CliError("--follow prints a live view, not JSON: drop one of them")
    if follow and edges:
        raise CliError("--edges goes with the final view, not --follow: drop one of them")
    conn, name = connect_to_org(server, token, org)
    with conn.client() as api:
        if not follow:
            cascade = api.get_cascade(name, cascade_id)
            if as_json:
                print_json(cascade)
            else:
                clock = following.ServerClock()  # a running member's duration, on the server's clock
                clock.observe(api.last_exchange, following.cascade_times(cascade))
                print_cascade(cascade, now=clock.now(), edges=edges)
            return
        deadline = following.Deadline(timeout)
        try:
            api.get_cascade(name, cascade_id)  # it exists: from here on an error loses track of it
            with following.losing_track(f"cascade {cascade_id}", following.resume_cascade(name, cascade_id)):
                ended = following.follow_cascade(api, name, cascade_id, out=console(), deadline=deadline)
        except KeyboardInterrupt:
            raise following.cascade_interrupted(name, cascade_id) from None
    raise following.cascade_finish(ended)


def _state(member: Json) -> str:
    """``queued (version 2)``, ``skipped: rejected by alice``."""
    text = following.member_status(member)
    if member.get("version") is not None:
        text += f" (version {member['version']})"
    note = following.member_note(member)
    return f"{text}: {note}" if note else text


def _act_on_member(
    action: str,
    done: str,
    cascade_id: str,
    stack: str,
    server: str | None,
    token: str | None,
    org: str | None,
    as_json: bool,
) -> Json:
    """Post ``action`` for the member, print the cascade (--json) or what became of the member; the cascade."""
    conn, ref = connect_for_stack(stack, server, token, org)  # a full org/project/stack names the cascade's org
    with conn.client() as api:
        cascade = api.cascade_member_action(cascade_id, ref, action)
    if as_json:
        print_json(cascade)
        return cascade
    wanted = f"{ref.project}/{ref.stack}"
    member = next((m for m in following.members_of(cascade) if m.get("stack") == wanted), {"stack": wanted})
    typer.echo(f"{done} {member['stack']} in cascade {cascade_id}: now {_state(member)}")
    return cascade


@app.command("approve")
@reports_errors
def approve(
    cascade_id: CascadeIdArgument,
    stack: MemberArgument,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Let a member that awaits approval run (who approved is recorded)."""
    _act_on_member("approve", "Approved", cascade_id, stack, server, token, org, as_json)


@app.command("reject")
@reports_errors
def reject(
    cascade_id: CascadeIdArgument,
    stack: MemberArgument,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Skip a member that awaits approval (and what only it would have set off)."""
    _act_on_member("reject", "Rejected", cascade_id, stack, server, token, org, as_json)


@app.command("retry")
@reports_errors
def retry(
    cascade_id: CascadeIdArgument,
    stack: MemberArgument,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a failed member again in its cascade; on success the descendants it had stopped run too."""
    cascade = _act_on_member("retry", "Retrying", cascade_id, stack, server, token, org, as_json)
    if as_json:
        return
    waiting = [m["stack"] for m in following.members_of(cascade) if m.get("status") == "waiting"]
    if waiting:
        typer.echo(f"Waiting for it: {', '.join(waiting)}")
    typer.echo(f"Follow it with: cascade cascade show {cascade_id} --org {cascade.get('organization')} --follow")


# --- impact plan ----------------------------------------------------------------------------------------------


def plan_tree(plan: Json, title: str) -> Tree:
    """The waves after the root, each member with the members it waits for and what is special about its edges."""
    tree = Tree(Text(title, style="bold"), guide_style="dim")
    edges = [e for e in plan.get("edges") or [] if isinstance(e, dict)]
    for index, wave in enumerate(plan.get("waves") or []):
        if index == 0:
            continue  # the root itself
        branch = tree.add(Text(f"wave {index}", style="bold"))
        for stack in wave:
            incoming = [e for e in edges if e.get("downstream") == stack]
            label = Text(str(stack))
            if incoming:
                label.append(f"  after {', '.join(sorted({str(e.get('upstream')) for e in incoming}))}", style="dim")
            notes = sorted(
                {
                    note
                    for e in incoming
                    for note in (
                        f"if outputs of {e.get('upstream')} changed" if e.get("triggerOn") == "outputs-changed" else "",
                        f"approval required (edge from {e.get('upstream')})" if e.get("requireApproval") else "",
                    )
                    if note
                }
            )
            if notes:
                label.append(f"  [{'; '.join(notes)}]", style="yellow")
            branch.add(label)
    return tree


@reports_errors
def plan(
    stack: StackArgument,
    operation: Annotated[
        Operation, typer.Option("--operation", "-o", help="The change to plan for.")
    ] = Operation.UPDATE,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the cascade a change to the stack would set off now: its members, wave by wave. Nothing runs."""
    conn, ref = connect_for_stack(stack, server, token, org)
    with conn.client() as api:
        found = api.impact_plan(ref, operation.value)
    if as_json:
        print_json(found)
        return
    members = [m for m in found.get("members") or [] if m != found.get("root")]
    if not found.get("root") or not members:
        typer.echo(f"Nothing would cascade from {_article(operation.value)} {operation.value} of {ref}.")
        return
    waves = len(found.get("waves") or []) - 1
    title = (
        f"{_article(operation.value).capitalize()} {operation.value} of {ref} would deploy "
        f"{len(members)} stack{'s' if len(members) != 1 else ''} in {waves} wave{'s' if waves != 1 else ''}:"
    )
    console().print(plan_tree(found, title))


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


# --- external update events -----------------------------------------------------------------------------------


def _read_outputs(source: str, option: str = "--outputs") -> Json:
    """A JSON object from a file, or from stdin for ``-`` (as ``pulumi stack output --json`` prints it)."""
    where = "stdin" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {option} {where}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(f"{option} {where} is not UTF-8 text") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        # json's message quotes no text of the file, only where it fails: a secret value stays unprinted.
        raise CliError(f"{option} {where} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CliError(f"{option} {where} must hold a JSON object of output names to values")
    return value


def _secret_names(outputs: Json, names: list[str], masked_source: str | None) -> set[str]:
    """The outputs to send as secrets: ``--secret`` names, and what ``--masked-outputs`` prints as "[secret]".

    ``--show-secrets`` prints a secret as a plain value, which the server would keep (and show) as plain.
    """
    marked = set(names)
    if masked_source is not None:
        masked = _read_outputs(masked_source, "--masked-outputs")
        # As the runner's pulumi runtime reads them: "[secret]" there, another value in --outputs.
        marked |= {name for name, value in masked.items() if value == SECRET_PLACEHOLDER and outputs.get(name) != value}
    unknown = sorted(marked - set(outputs))
    if unknown:
        hint = "'--secret'" if set(unknown) & set(names) else "'--masked-outputs'"
        raise typer.BadParameter(f"--outputs has no output named {', '.join(unknown)}", param_hint=hint)
    return marked


def _as_secrets(outputs: Json, names: set[str]) -> Json:
    """``outputs`` with ``names`` as ``{"secret": value}``, the server's mark of a secret (kept if already so)."""
    return {
        name: value if name not in names or _is_marked(value) else {"secret": value} for name, value in outputs.items()
    }


def _is_marked(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"secret"}


def _parse_changes(text: str) -> Json:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f'--resource-changes is not valid JSON ({exc}): write e.g. {{"create": 2, "same": 5}}') from None
    if not isinstance(value, dict):
        raise CliError('--resource-changes must be a JSON object, e.g. {"create": 2, "same": 5}')
    return value


@reports_errors
def notify(
    stack: StackArgument,
    kind: Annotated[
        EventKind,
        typer.Option("--kind", help="What happened to the stack, e.g. update_succeeded.", show_default=False),
    ],
    outputs: Annotated[
        str | None,
        typer.Option(
            "--outputs",
            metavar="FILE",
            help='The stack\'s outputs after the update: a JSON object in FILE, or on stdin with "-", e.g. '
            "`pulumi stack output --json --show-secrets > out.json`. That prints secrets as plain values: mark "
            "them with --secret (or --masked-outputs), or they are kept and shown as plain outputs. A value "
            'written {"secret": value} is a secret already. Only with update_succeeded.',
            show_default=False,
        ),
    ] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            metavar="NAME",
            help="Keep the output NAME of --outputs as a secret (repeatable), e.g. `--outputs out.json "
            "--secret dbPassword`.",
            show_default=False,
        ),
    ] = None,
    masked_outputs: Annotated[
        str | None,
        typer.Option(
            "--masked-outputs",
            metavar="FILE",
            help="`pulumi stack output --json` without --show-secrets, in FILE: every output it prints as "
            '"\\[secret]" is kept as a secret.',  # \[ : a bracket, not rich markup
            show_default=False,
        ),
    ] = None,
    resource_changes: Annotated[
        str | None,
        typer.Option(
            "--resource-changes",
            metavar="JSON",
            help='Resource counts by operation, e.g. \'{"create": 2, "same": 5}\'.',
            show_default=False,
        ),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Report an update made outside stackcascade (a `pulumi up` in CI): it starts a cascade like a deployment would."""
    if outputs is None and (secret or masked_outputs is not None):
        hint = "'--secret'" if secret else "'--masked-outputs'"
        raise typer.BadParameter("it marks outputs of --outputs, which is not given", param_hint=hint)
    if outputs == "-" and masked_outputs == "-":
        raise typer.BadParameter("--outputs already reads stdin; give a FILE", param_hint="'--masked-outputs'")
    conn, ref = connect_for_stack(stack, server, token, org)
    body: Json = {"kind": kind.value}
    if outputs is not None:
        values = _read_outputs(outputs)
        body["outputs"] = _as_secrets(values, _secret_names(values, secret or [], masked_outputs))
    if resource_changes is not None:
        body["resourceChanges"] = _parse_changes(resource_changes)
    with conn.client() as api:
        result = api.record_event(ref, body)
    if as_json:
        print_json(result)
        return
    recorded = f"Recorded {result.get('kind') or kind.value} of {ref}"
    if outputs is not None:
        recorded += "; outputs changed" if result.get("outputsChanged") else "; outputs unchanged"
    cascade_id = result.get("cascadeId")
    if cascade_id:
        typer.echo(f"{recorded}; started cascade {cascade_id}")
        typer.echo(f"Follow it with: cascade cascade show {cascade_id} --org {ref.org} --follow")
    else:
        typer.echo(f"{recorded}; no cascade started")
