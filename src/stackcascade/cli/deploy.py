"""``cascade deploy`` (queue a deployment, optionally with one-off overrides, and follow it) and ``cascade cancel``."""

from __future__ import annotations

from typing import Annotated

import typer

from stackcascade.cli import follow as following
from stackcascade.cli.connection import JsonOption, OrgOption, ServerOption, StackArgument, TokenOption, connect
from stackcascade.cli.documents import deployment_request
from stackcascade.cli.errors import CliError, reports_errors
from stackcascade.cli.output import console, print_json, print_table
from stackcascade.cli.settings import (
    BranchOption,
    CommitOption,
    EnvOption,
    PreRunOption,
    RepoDirOption,
    RepoUrlOption,
    SecretEnvOption,
    flags_from_options,
)
from stackcascade.domain.deployments import Operation


@reports_errors
def deploy(
    stack: StackArgument,
    operation: Annotated[Operation, typer.Option("--operation", "-o", help="What to run.")] = Operation.UPDATE,
    branch: BranchOption = None,
    commit: CommitOption = None,
    repo_url: RepoUrlOption = None,
    repo_dir: RepoDirOption = None,
    env: EnvOption = None,
    secret_env: SecretEnvOption = None,
    pre_run: PreRunOption = None,
    no_inherit: Annotated[
        bool, typer.Option("--no-inherit", help="Ignore the saved settings: use only what is given here.")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Show the steps and the log until the deployment ends, then the cascade it started (if any) until "
            f"that ends. {following.EXIT_CODES_HELP}",
        ),
    ] = False,
    timeout: following.FollowTimeoutOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a deployment of the stack; the options override its saved settings for this run only."""
    following.require_follow(follow, timeout)
    if follow and as_json:
        raise CliError("--follow prints a live view, not JSON: use `cascade logs STACK ID --follow --json` for that")
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
    )
    body = deployment_request(operation.value, inherit=not no_inherit, flags=flags)
    with conn.client() as api:
        queued = api.create_deployment(ref, body)
        if as_json:
            print_json(queued)
            return
        typer.echo(f"Queued {operation.value} of {ref}: version {queued.get('version')}")
        typer.echo(f"  id:      {queued.get('id')}")
        typer.echo(f"  console: {queued.get('consoleUrl')}")
        if not follow:
            return
        deployment_id = str(queued.get("id"))
        out = console()
        deadline = following.Deadline(timeout)
        try:
            with following.losing_track(f"deployment {deployment_id}", following.resume_deployment(ref, deployment_id)):
                if following.is_live_terminal(out):
                    finished = following.follow_live(api, ref, deployment_id, out=out, timeout=timeout)
                else:
                    finished = following.follow_plain(
                        api, ref, deployment_id, emit=following.echo_lines(False), timeout=timeout
                    )
                    rows = following.steps_of(finished)
                    print_table(("STEP", "STATUS", "DURATION"), rows, empty="No steps.")
        except KeyboardInterrupt:
            raise following.interrupted(ref, deployment_id) from None
        cascade_id = finished.get("cascadeId")
        if not cascade_id:
            raise following.finish(deployment_id, finished)
        # The deployment started a cascade: its members run after it, so follow them until the cascade ends.
        typer.echo(following.status_line(deployment_id, finished))
        typer.echo(f"Following cascade {cascade_id} (members in waves; Ctrl-C stops following, not the cascade)")
        try:
            with following.losing_track(f"cascade {cascade_id}", following.resume_cascade(ref.org, str(cascade_id))):
                cascade = following.follow_cascade(api, ref.org, str(cascade_id), out=out, deadline=deadline)
        except KeyboardInterrupt:
            raise following.cascade_interrupted(ref.org, str(cascade_id)) from None
    raise following.cascade_finish(cascade)


@reports_errors
def cancel(
    stack: StackArgument,
    deployment: Annotated[
        str, typer.Argument(metavar="ID_OR_VERSION", help="The deployment's id, or its version number.")
    ],
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a deployment: a queued one is skipped, a running one is asked to stop."""
    conn = connect(server, token, org)
    ref = conn.stack(stack)
    with conn.client() as api:
        deployment_id = following.resolve_deployment_id(api, ref, deployment)
        result = api.cancel_deployment(ref, deployment_id)
    if as_json:
        print_json(result)
    elif result.get("status") == "skipped":
        typer.echo(f"Cancelled deployment {deployment_id} of {ref}: it will not run (skipped)")
    else:
        typer.echo(f"Cancellation requested for deployment {deployment_id} of {ref} ({result.get('status')})")
