"""``cascade logs``: a deployment's log, as it is now or followed until the deployment ends."""

from __future__ import annotations

from typing import Annotated

import typer

from stackcascade.cli import follow as following
from stackcascade.cli.connection import OrgOption, ServerOption, StackArgument, TokenOption, connect
from stackcascade.cli.errors import reports_errors


@reports_errors
def logs(
    stack: StackArgument,
    deployment: Annotated[
        str, typer.Argument(metavar="DEPLOYMENT_ID", help="The deployment's id (or its version number).")
    ],
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help=f"Keep printing new lines until the deployment ends. {following.EXIT_CODES_HELP}"
        ),
    ] = False,
    timeout: following.FollowTimeoutOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    org: OrgOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per log line (JSON Lines); the final status goes to stderr.")
    ] = False,
) -> None:
    """Print a deployment's log, each line after its step's name: what there is now, or with --follow until it ends."""
    following.require_follow(follow, timeout)
    conn = connect(server, token, org)
    ref = conn.stack(stack)
    emit = following.echo_lines(as_json)
    with conn.client() as api:
        deployment_id = following.resolve_deployment_id(api, ref, deployment)
        if not follow:
            for line in following.LogStream(api, ref, deployment_id).available():
                emit(line)
            return
        try:
            following.get_deployment(api, ref, deployment_id)  # it exists: from here on an error loses track of it
            with following.losing_track(f"deployment {deployment_id}", following.resume_deployment(ref, deployment_id)):
                finished = following.follow_plain(api, ref, deployment_id, emit=emit, timeout=timeout)
        except KeyboardInterrupt:
            raise following.interrupted(ref, deployment_id) from None
    raise following.finish(deployment_id, finished, to_stderr=as_json)
