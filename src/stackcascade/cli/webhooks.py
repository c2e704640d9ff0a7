"""``cascade webhook create|ls|show|update|rm|ping|deliveries|redeliver``: stack and organization webhooks.

A webhook belongs to a stack (``--stack``) or to an organization (``--org``). A secret is never an
argument (argv is visible to other users of the machine and kept in shell history): it is read from
stdin or from a named environment variable, and never printed.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from stackcascade.cli.client import Json, WebhookOwner
from stackcascade.cli.connection import Connection, JsonOption, ServerOption, TokenOption, connect
from stackcascade.cli.errors import CliError, reports_errors
from stackcascade.cli.output import print_details, print_json, print_table, timestamp
from stackcascade.domain.cascade import TriggerOn
from stackcascade.domain.webhook_events import WebhookFormat

app = typer.Typer(help="Create, inspect, test and delete stack and organization webhooks.", no_args_is_help=True)

_OWNER = "Whose webhooks"
_EVENTS = "Events"
_SIGNING = "Signing"
_EDGE = "Deployment edges (--format pulumi_deployments)"
DEFAULT_DELIVERIES = 50

StackOption = Annotated[
    str | None,
    typer.Option(
        "--stack",
        metavar="STACK",
        help="A stack's webhooks: org/project/stack, or project/stack in the default org.",
        rich_help_panel=_OWNER,
        show_default=False,
    ),
]
OrgOption = Annotated[
    str | None,
    typer.Option(
        "--org",
        metavar="ORG",
        help="An organization's webhooks (with --stack project/stack: the stack's organization).",
        rich_help_panel=_OWNER,
        show_default=False,
    ),
]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The webhook's name (from `cascade webhook ls`).")]
_URL = typer.Option(
    "--url",
    metavar="URL",
    help="Where to POST events; with --format pulumi_deployments the stack to deploy, as project/stack.",
    show_default=False,
)
UrlOption = Annotated[str, _URL]  # create: required
NewUrlOption = Annotated[str | None, _URL]  # update: a new URL, when given
DisplayNameOption = Annotated[
    str | None, typer.Option("--display-name", help="A description shown with the webhook.", show_default=False)
]
FormatOption = Annotated[
    WebhookFormat | None,
    typer.Option(
        "--format",
        help="Payload shape (default raw); pulumi_deployments deploys the stack named by --url instead of posting.",
        show_default=False,
    ),
]
EventOption = Annotated[
    list[str] | None,
    typer.Option(
        "--event",
        metavar="EVENT",
        help="Only this event, e.g. deployment_failed; repeat for more. No --event and no --group: every event.",
        rich_help_panel=_EVENTS,
        show_default=False,
    ),
]
GroupOption = Annotated[
    list[str] | None,
    typer.Option(
        "--group",
        metavar="GROUP",
        help="Every event of a group (stacks or deployments); repeat for more.",
        rich_help_panel=_EVENTS,
        show_default=False,
    ),
]
TriggerOnOption = Annotated[
    TriggerOn | None,
    typer.Option(
        "--trigger-on",
        help="In a cascade: fire always, or only when the outputs of the webhook's stack changed (new edges: always).",
        rich_help_panel=_EDGE,
        show_default=False,
    ),
]
RequireApprovalOption = Annotated[
    bool | None,
    typer.Option(
        "--require-approval/--no-require-approval",
        help="In a cascade: the stack this edge deploys waits for an approval (new edges: no).",
        rich_help_panel=_EDGE,
        show_default=False,
    ),
]
SecretStdinOption = Annotated[
    bool,
    typer.Option(
        "--secret-stdin",
        help="Read the signing secret from stdin (prompted for, hidden, on a terminal).",
        rich_help_panel=_SIGNING,
    ),
]
SecretEnvOption = Annotated[
    str | None,
    typer.Option(
        "--secret-env",
        metavar="VAR",
        help="Read the signing secret from the environment variable VAR.",
        rich_help_panel=_SIGNING,
        show_default=False,
    ),
]


# --- helpers ------------------------------------------------------------------------------------------


def _connect(
    server: str | None, token: str | None, stack: str | None, org: str | None
) -> tuple[Connection, WebhookOwner]:
    """The connection and whose webhooks: a StackRef for ``--stack``, the org's name for ``--org``."""
    # --org, else CASCADE_ORG, else the login's org completes a project/stack reference, as in other commands;
    # only an explicit --org names an organization's own webhooks.
    if stack is None:
        if org is None:
            raise CliError(
                "whose webhooks? give --stack ORG/PROJECT/STACK for a stack's, or --org ORG for an organization's"
            )
        return connect(server, token, org), org
    conn = connect(server, token, org or os.environ.get("CASCADE_ORG") or None)
    ref = conn.stack(stack)
    if org is not None and ref.org != org:
        raise CliError(
            f"--stack {stack} is in organization {ref.org}, not --org {org}: give --stack for a stack's webhooks "
            "or --org for the organization's"
        )
    return conn, ref


def _describe(owner: WebhookOwner) -> str:
    return f"organization {owner}" if isinstance(owner, str) else f"stack {owner}"


def _read_secret(from_stdin: bool, variable: str | None) -> str | None:
    """The secret from stdin or an environment variable; None when neither is asked for. Never echoed."""
    if from_stdin and variable is not None:
        raise CliError("give --secret-stdin or --secret-env, not both")
    if from_stdin:
        typed = sys.stdin.isatty()
        value = typer.prompt("Webhook secret", hide_input=True, err=True) if typed else sys.stdin.read()
        value = value.rstrip("\r\n")  # the newline of `echo` or of a file
        if not value:
            raise CliError("the secret read from stdin is empty")
        return value
    if variable is None:
        return None
    if "=" in variable or not variable.strip():
        # Not echoed: it may be VAR=secret, written as for `cascade settings set --secret-env`.
        raise CliError("--secret-env takes the name of an environment variable holding the secret, not KEY=VALUE")
    value = os.environ.get(variable)
    if value is None:
        raise CliError(f"environment variable {variable} is not set (--secret-env names the variable with the secret)")
    if not value:
        raise CliError(f"environment variable {variable} is empty")
    return value


def _choose_list(values: list[str] | None, clear: bool, option: str) -> list[str] | None:
    """``values`` to replace the list, [] to clear it, None to leave it unchanged."""
    if clear and values:
        raise CliError(f"give {option} or --clear-{option.removeprefix('--')}s, not both")
    if clear:
        return []
    return list(values) if values else None


def _edge_options_given(trigger_on: TriggerOn | None, require_approval: bool | None) -> list[str]:
    """The deployment-edge options given, as written on the command line."""
    given = [] if trigger_on is None else [f"--trigger-on {trigger_on.value}"]
    if require_approval is not None:
        given.append("--require-approval" if require_approval else "--no-require-approval")
    return given


def _refuse_edge_options(given: list[str], what: str) -> None:
    """--trigger-on and --require-approval belong to deployment edges: refuse them for ``what``."""
    if given:
        raise CliError(
            f"{' and '.join(given)} only apply to a deployment edge (--format pulumi_deployments), not to {what}"
        )


def _body(**fields: object) -> Json:
    """The API's webhook fields that were given (PATCH changes only those)."""
    return {key: value for key, value in fields.items() if value is not None}


def _events(hook: Json) -> str:
    filters = hook.get("filters") or []
    groups = hook.get("groups") or []
    if not filters and not groups:
        return "all"
    return ", ".join([*(f"{group} (group)" for group in groups), *filters])


def _edge_details(hook: Json) -> list[tuple[str, object]]:
    """A deployment edge's pruning and gate (other webhooks have neither)."""
    if hook.get("format") != WebhookFormat.PULUMI_DEPLOYMENTS.value:
        return []
    return [("trigger on", hook.get("triggerOn") or TriggerOn.ALWAYS.value), ("approval", _required(hook))]


def _required(hook: Json) -> str:
    return "required" if hook.get("requireApproval") else "not required"


def _yes(value: object) -> str:
    return "yes" if value else "no"


def _duration(value: object) -> str:
    return f"{value} ms" if isinstance(value, int) else ""


def _code(attempt: Json) -> str:
    code = attempt.get("responseCode")
    return str(code) if code else "-"  # 0: no response arrived (see the error)


def _succeeded(attempt: Json) -> bool:
    code = attempt.get("responseCode")
    return isinstance(code, int) and 200 <= code < 300


def _report_attempt(attempt: Json, what: str, as_json: bool) -> None:
    """Print one attempt (ping, redelivery); exit code 1 when the receiver did not answer 2xx."""
    if as_json:
        print_json(attempt)
    outcome = f"response {_code(attempt)}" if attempt.get("responseCode") else "no response"
    outcome += f" in {_duration(attempt.get('duration')) or '? ms'}"
    if attempt.get("error"):
        outcome += f": {attempt['error']}"
    target = attempt.get("requestUrl")
    if not _succeeded(attempt):
        raise CliError(f"{what} to {target} failed: {outcome} (attempt {attempt.get('id')})")
    if not as_json:
        typer.echo(f"{what} to {target}: {outcome} (attempt {attempt.get('id')})")


# --- commands -----------------------------------------------------------------------------------------


@app.command("create")
@reports_errors
def create(
    url: UrlOption,
    stack: StackOption = None,
    org: OrgOption = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The webhook's name (default: generated).", show_default=False)
    ] = None,
    display_name: DisplayNameOption = None,
    format_: FormatOption = None,
    event: EventOption = None,
    group: GroupOption = None,
    inactive: Annotated[bool, typer.Option("--inactive", help="Create it switched off: nothing is sent.")] = False,
    trigger_on: TriggerOnOption = None,
    require_approval: RequireApprovalOption = None,
    secret_stdin: SecretStdinOption = False,
    secret_env: SecretEnvOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a webhook of a stack or of an organization."""
    if format_ is not WebhookFormat.PULUMI_DEPLOYMENTS:
        _refuse_edge_options(
            _edge_options_given(trigger_on, require_approval),
            f"a {(format_ or WebhookFormat.RAW).value} webhook",
        )
    conn, owner = _connect(server, token, stack, org)
    secret = _read_secret(secret_stdin, secret_env)
    body = _body(
        name=name,
        displayName=display_name,
        payloadUrl=url,
        format=format_.value if format_ else None,
        filters=list(event) if event else None,
        groups=list(group) if group else None,
        active=False if inactive else None,
        secret=secret,
        triggerOn=trigger_on.value if trigger_on else None,
        requireApproval=require_approval,
    )
    with conn.client() as api:
        created = api.create_webhook(owner, body)
    if as_json:
        print_json(created)
    else:
        typer.echo(f"Created webhook {created.get('name')!r} of {_describe(owner)}")


@app.command("ls")
@reports_errors
def list_webhooks(
    stack: StackOption = None,
    org: OrgOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the webhooks of a stack or of an organization (never their secrets)."""
    conn, owner = _connect(server, token, stack, org)
    with conn.client() as api:
        hooks = api.list_webhooks(owner)
    if as_json:
        print_json(hooks)
        return
    rows = [
        (
            h.get("name"),
            _yes(h.get("active")),
            h.get("format"),
            _events(h),
            _yes(h.get("hasSecret")),
            h.get("payloadUrl"),
        )
        for h in hooks
    ]
    print_table(
        ("NAME", "ACTIVE", "FORMAT", "EVENTS", "SECRET", "URL"), rows, empty=f"No webhooks of {_describe(owner)}."
    )


@app.command("show")
@reports_errors
def show(
    name: NameArgument,
    stack: StackOption = None,
    org: OrgOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one webhook (whether it has a secret, never the secret)."""
    conn, owner = _connect(server, token, stack, org)
    with conn.client() as api:
        hook = api.get_webhook(owner, name)
    if as_json:
        print_json(hook)
        return
    print_details(
        [
            ("name", hook.get("name")),
            ("display name", hook.get("displayName")),
            ("owner", _describe(owner)),
            ("url", hook.get("payloadUrl")),
            ("format", hook.get("format")),
            ("active", _yes(hook.get("active"))),
            ("events", _events(hook)),
            *_edge_details(hook),
            ("secret", "set" if hook.get("hasSecret") else "none"),
        ]
    )


@app.command("update")
@reports_errors
def update(
    name: NameArgument,
    stack: StackOption = None,
    org: OrgOption = None,
    new_name: Annotated[str | None, typer.Option("--name", help="A new name.", show_default=False)] = None,
    display_name: DisplayNameOption = None,
    url: NewUrlOption = None,
    format_: FormatOption = None,
    event: EventOption = None,
    clear_events: Annotated[
        bool, typer.Option("--clear-events", help="Drop the event filters.", rich_help_panel=_EVENTS)
    ] = False,
    group: GroupOption = None,
    clear_groups: Annotated[
        bool, typer.Option("--clear-groups", help="Drop the event groups.", rich_help_panel=_EVENTS)
    ] = False,
    active: Annotated[
        bool | None,
        typer.Option("--active/--inactive", help="Switch the webhook on or off.", show_default=False),
    ] = None,
    trigger_on: TriggerOnOption = None,
    require_approval: RequireApprovalOption = None,
    secret_stdin: SecretStdinOption = False,
    secret_env: SecretEnvOption = None,
    clear_secret: Annotated[
        bool, typer.Option("--clear-secret", help="Remove the signing secret.", rich_help_panel=_SIGNING)
    ] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a webhook: only the options given change (--event and --group replace the lists)."""
    if clear_secret and (secret_stdin or secret_env is not None):
        raise CliError("give --clear-secret or a new secret, not both")
    filters = _choose_list(event, clear_events, "--event")
    groups = _choose_list(group, clear_groups, "--group")
    edge_options = _edge_options_given(trigger_on, require_approval)
    if format_ is not None and format_ is not WebhookFormat.PULUMI_DEPLOYMENTS:
        _refuse_edge_options(edge_options, f"a {format_.value} webhook")
    conn, owner = _connect(server, token, stack, org)
    secret = "" if clear_secret else _read_secret(secret_stdin, secret_env)
    body = _body(
        name=new_name,
        displayName=display_name,
        payloadUrl=url,
        format=format_.value if format_ else None,
        filters=filters,
        groups=groups,
        active=active,
        secret=secret,
        triggerOn=trigger_on.value if trigger_on else None,
        requireApproval=require_approval,
    )
    if not body:
        raise CliError(
            "nothing to change: give options such as --url, --event, --group, --active, --inactive or, "
            "for a deployment edge, --trigger-on and --require-approval"
        )
    with conn.client() as api:
        if edge_options and format_ is None:
            # The server accepts the defaults (always, no approval) on any webhook: say that they mean nothing there.
            current = api.get_webhook(owner, name).get("format")
            if current != WebhookFormat.PULUMI_DEPLOYMENTS.value:
                _refuse_edge_options(edge_options, f"webhook {name!r}, a {current} webhook")
        updated = api.update_webhook(owner, name, body)
    if as_json:
        print_json(updated)
        return
    renamed = f", now named {updated.get('name')!r}" if updated.get("name") != name else ""
    typer.echo(f"Updated webhook {name!r} of {_describe(owner)}{renamed}")


@app.command("rm")
@reports_errors
def remove(
    name: NameArgument,
    stack: StackOption = None,
    org: OrgOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a webhook with its delivery history; prints what was deleted (--json: the webhook as it was)."""
    conn, owner = _connect(server, token, stack, org)
    with conn.client() as api:
        hook = api.get_webhook(owner, name)
        api.delete_webhook(owner, name)
    if as_json:
        print_json(hook)
    else:
        typer.echo(f"Deleted webhook {name!r} of {_describe(owner)} ({hook.get('format')} to {hook.get('payloadUrl')})")


@app.command("ping")
@reports_errors
def ping(
    name: NameArgument,
    stack: StackOption = None,
    org: OrgOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a ping event now and show the answer; exit code 1 unless the receiver answered 2xx."""
    conn, owner = _connect(server, token, stack, org)
    with conn.client() as api:
        attempt = api.ping_webhook(owner, name)
    _report_attempt(attempt, f"Ping of webhook {name!r}", as_json)


@app.command("deliveries")
@reports_errors
def deliveries(
    name: NameArgument,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="How many attempts to show, newest first.")
    ] = DEFAULT_DELIVERIES,
    before: Annotated[
        str | None,
        typer.Option("--before", metavar="ID", help="Only attempts older than this attempt id.", show_default=False),
    ] = None,
    stack: StackOption = None,
    org: OrgOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List a webhook's delivery attempts, newest first (pings and redeliveries included)."""
    conn, owner = _connect(server, token, stack, org)
    with conn.client() as api:
        attempts = api.webhook_deliveries(owner, name, limit=limit, before=before)
    if as_json:
        print_json(attempts)
        return
    rows = [
        (
            timestamp(a.get("timestamp")),
            a.get("event"),
            a.get("attempt"),
            a.get("status"),
            _code(a),
            _duration(a.get("duration")),
            a.get("id"),
            a.get("error"),
        )
        for a in attempts
    ]
    print_table(
        ("TIME", "EVENT", "ATTEMPT", "STATUS", "CODE", "DURATION", "ID", "ERROR"),
        rows,
        empty=f"No deliveries of webhook {name!r}.",
    )
    if len(attempts) == limit:
        typer.echo(f"The newest {limit} attempts; older ones, if any: --before {attempts[-1].get('id')}")


@app.command("redeliver")
@reports_errors
def redeliver(
    name: NameArgument,
    delivery: Annotated[
        str,
        typer.Argument(metavar="ID", help="An attempt id (from `cascade webhook deliveries`) or a delivery id."),
    ],
    stack: StackOption = None,
    org: OrgOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a delivery's payload again, unchanged, now; exit code 1 unless the receiver answered 2xx."""
    conn, owner = _connect(server, token, stack, org)
    with conn.client() as api:
        attempt = api.redeliver_webhook(owner, name, delivery)
    _report_attempt(attempt, f"Redelivery of {attempt.get('event')} by webhook {name!r}", as_json)
