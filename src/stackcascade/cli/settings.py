"""``cascade settings get|set|rm``: a stack's deployment settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stackcascade.cli.connection import JsonOption, OrgOption, ServerOption, StackArgument, TokenOption, connect
from stackcascade.cli.documents import SettingsFlags, apply_flags, flatten_settings, load_document
from stackcascade.cli.errors import CliError, reports_errors
from stackcascade.cli.output import print_details, print_json
from stackcascade.cli.refs import parse_pairs

app = typer.Typer(help="Show, change and delete a stack's deployment settings.", no_args_is_help=True)

_SOURCE = "Source"
_RUN = "Run"

RepoUrlOption = Annotated[
    str | None, typer.Option("--repo-url", help="Git repository URL or local path.", rich_help_panel=_SOURCE)
]
BranchOption = Annotated[
    str | None, typer.Option("--branch", help="Git branch (drops a saved commit).", rich_help_panel=_SOURCE)
]
CommitOption = Annotated[
    str | None, typer.Option("--commit", help="Git commit (drops a saved branch).", rich_help_panel=_SOURCE)
]
RepoDirOption = Annotated[
    str | None, typer.Option("--repo-dir", help="Project directory inside the repository.", rich_help_panel=_SOURCE)
]
EnvOption = Annotated[
    list[str] | None,
    typer.Option(
        "--env", metavar="KEY=VALUE", help="Environment variable KEY=VALUE; repeat for more.", rich_help_panel=_RUN
    ),
]
SecretEnvOption = Annotated[
    list[str] | None,
    typer.Option(
        "--secret-env",
        metavar="KEY=VALUE",
        help="Secret environment variable KEY=VALUE, stored encrypted.",
        rich_help_panel=_RUN,
    ),
]
PreRunOption = Annotated[
    list[str] | None,
    typer.Option(
        "--pre-run",
        metavar="COMMAND",
        help="Command run before the operation; repeat for more (replaces the list).",
        rich_help_panel=_RUN,
    ),
]


def flags_from_options(
    *,
    repo_url: str | None = None,
    branch: str | None = None,
    commit: str | None = None,
    repo_dir: str | None = None,
    env: list[str] | None = None,
    secret_env: list[str] | None = None,
    pre_run: list[str] | None = None,
    shell: str | None = None,
    skip_intermediate: bool | None = None,
) -> SettingsFlags:
    """The options as one value (shared with ``cascade deploy``)."""
    return SettingsFlags(
        repo_url=repo_url,
        branch=branch,
        commit=commit,
        repo_dir=repo_dir,
        env=parse_pairs(env or [], "--env"),
        secret_env=parse_pairs(secret_env or [], "--secret-env", secret=True),
        pre_run=tuple(pre_run or ()),
        shell=shell,
        skip_intermediate=skip_intermediate,
    )


@app.command("get")
@reports_errors
def get(
    stack: StackArgument,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the settings (secret values masked)."""
    conn = connect(server, token, org)
    ref = conn.stack(stack)
    with conn.client() as api:
        settings = api.get_settings(ref)
    if as_json:
        print_json(settings)
        return
    typer.echo(f"Deployment settings of {ref} (version {settings.get('version')})")
    rows = flatten_settings(settings)
    if rows:
        print_details(rows)
    else:
        typer.echo("No settings saved.")


@app.command("set")
@reports_errors
def set_settings(
    stack: StackArgument,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="A settings document in JSON or YAML; the options below go over it."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace the saved settings instead of merging into them.")
    ] = False,
    repo_url: RepoUrlOption = None,
    branch: BranchOption = None,
    commit: CommitOption = None,
    repo_dir: RepoDirOption = None,
    env: EnvOption = None,
    secret_env: SecretEnvOption = None,
    pre_run: PreRunOption = None,
    shell: Annotated[
        str | None, typer.Option("--shell", help="Shell for pre-run commands.", rich_help_panel=_RUN)
    ] = None,
    skip_intermediate: Annotated[
        bool | None,
        typer.Option(
            "--skip-intermediate/--no-skip-intermediate",
            help="Skip queued deployments superseded by a newer one.",
            rich_help_panel=_RUN,
            show_default=False,
        ),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Save settings: merged into the saved ones (JSON merge-patch), or replacing them with --replace."""
    conn = connect(server, token, org)
    ref = conn.stack(stack)
    flags = flags_from_options(
        repo_url=repo_url,
        branch=branch,
        commit=commit,
        repo_dir=repo_dir,
        env=env,
        secret_env=secret_env,
        pre_run=pre_run,
        shell=shell,
        skip_intermediate=skip_intermediate,
    )
    if file is None and flags.is_empty():
        raise CliError("nothing to set: give --file and/or options such as --repo-url, --branch, --env")
    document = apply_flags(load_document(file) if file else {}, flags)
    with conn.client() as api:
        saved = api.save_settings(ref, document, replace=replace)
    if as_json:
        print_json(saved)
    else:
        how = "Replaced" if replace else "Updated"
        typer.echo(f"{how} deployment settings of {ref} (version {saved.get('version')})")


@app.command("rm")
@reports_errors
def remove(
    stack: StackArgument,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete the stack's deployment settings; --json: the settings as they were (secrets masked)."""
    conn = connect(server, token, org)
    ref = conn.stack(stack)
    with conn.client() as api:
        deleted = api.get_settings(ref) if as_json else None
        api.delete_settings(ref)
    if deleted is not None:
        print_json(deleted)
    else:
        typer.echo(f"Deleted deployment settings of {ref}")
