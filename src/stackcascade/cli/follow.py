"""Following a deployment: its log stream (Pulumi's ``nextToken`` protocol), its steps, and how it ended.

Shared by ``cascade logs`` and ``cascade deploy --follow``. Log lines are always printed as plain text
(``[step] line``): their content is never read as Rich markup. Every wait is bounded: a server that goes
away is an error on the next request, a server that repeats itself is an error, and ``--timeout`` bounds
the whole follow.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from stackcascade.cli.client import ApiClient, Json, api_path
from stackcascade.cli.errors import CliError
from stackcascade.cli.refs import StackRef

STEP_NAMES = ("source", "pre-run", "operation", "outputs")
TERMINAL = frozenset({"succeeded", "failed", "skipped"})
PAGE_SIZE = 499  # the largest page the API serves
POLL_SECONDS = 0.5
# Once the log stream has ended the deployment is finished; allow its status a moment to show it anyway.
SETTLE_SECONDS = 30.0

FollowTimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        min=0,
        help="With --follow: give up (exit 1) if the deployment has not ended after this long.",
        show_default=False,
    ),
]


# -- the API ---------------------------------------------------------------------------------------------------


def _deployment_path(ref: StackRef, deployment_id: str, *more: str) -> str:
    return api_path("stacks", ref.org, ref.project, ref.stack, "deployments", deployment_id, *more)


def _object(api: ApiClient, path: str, params: dict[str, object] | None = None) -> Json:
    value = api.request("GET", path, params=params)
    if not isinstance(value, dict):
        raise CliError(f"unexpected answer from {api.server}{path}: expected a JSON object")
    return value


def get_deployment(api: ApiClient, ref: StackRef, deployment_id: str) -> Json:
    return _object(api, _deployment_path(ref, deployment_id))


def resolve_deployment_id(api: ApiClient, ref: StackRef, id_or_version: str) -> str:
    """A deployment id as given, or the id of a version number (as ``deployments show`` accepts)."""
    if not id_or_version.isdigit():
        return id_or_version
    found = _object(api, api_path("stacks", ref.org, ref.project, ref.stack, "deployments", "version", id_or_version))
    return str(found.get("id") or id_or_version)


class LogStream:
    """The streaming log mode: each ``fetch`` returns the lines after the last one read.

    ``ended`` becomes true when the server leaves ``nextToken`` out: the deployment has ended and every
    line has been read.
    """

    def __init__(self, api: ApiClient, ref: StackRef, deployment_id: str, *, page_size: int = PAGE_SIZE) -> None:
        self._api = api
        self._path = _deployment_path(ref, deployment_id, "logs")
        self._page_size = page_size
        self._token: str | None = None
        self.ended = False

    def fetch(self) -> list[Json]:
        page = _object(self._api, self._path, {"continuationToken": self._token, "count": self._page_size})
        lines = page.get("lines")
        if lines is None:
            lines = []
        if not isinstance(lines, list) or not all(isinstance(line, dict) for line in lines):
            raise CliError(f"unexpected answer from {self._api.server}{self._path}: 'lines' is not a list of objects")
        token = page.get("nextToken")
        if token is None:
            self.ended = True
        elif lines and str(token) == self._token:  # new lines but the same token: the next call would repeat them
            raise CliError(f"the server at {self._api.server} repeated a nextToken while reading logs")
        else:
            self._token = str(token)
        return lines

    def available(self) -> Iterator[Json]:
        """Every line there is now: pages until one brings no new lines or the stream has ended."""
        while not self.ended:
            lines = self.fetch()
            yield from lines
            if not lines:
                return


# -- printing lines --------------------------------------------------------------------------------------------


def plain_line(line: Json) -> str:
    """``[step] text``; a line holding newlines (a multi-line command echoed) gets the prefix on each of them."""
    prefix = f"[{line.get('header') or '?'}] "
    return "\n".join(prefix + part for part in str(line.get("line", "")).splitlines() or [""])


def json_line(line: Json) -> str:
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def rich_line(line: Json) -> Text:
    """For a terminal: the step dimmed, the line's own ANSI colours kept, its brackets never read as markup."""
    prefix = f"[{line.get('header') or '?'}] "
    parts = str(line.get("line", "")).splitlines() or [""]
    return Text("\n").join(Text.assemble((prefix, "dim"), Text.from_ansi(part)) for part in parts)


def echo_lines(as_json: bool) -> Callable[[Json], None]:
    render = json_line if as_json else plain_line
    return lambda line: typer.echo(render(line))


# -- steps -----------------------------------------------------------------------------------------------------


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def steps_of(deployment: Json, *, now: datetime | None = None) -> list[tuple[str, str, str]]:
    """(name, status, duration) for the four steps (those not reported yet are not-started), then any others."""
    jobs = deployment.get("jobs") or [{}]
    reported = [s for s in (jobs[0] or {}).get("steps") or [] if isinstance(s, dict)]
    by_name = {str(s.get("name")): s for s in reported}
    names = list(STEP_NAMES) + [n for n in by_name if n not in STEP_NAMES]
    moment = now or datetime.now(UTC)
    result = []
    for name in names:
        step = by_name.get(name, {})
        status = str(step.get("status") or "not-started")
        started = _parse_time(step.get("started"))
        ended = _parse_time(step.get("lastUpdated"))
        took = ""
        if started is not None and ended is not None:
            took = duration((ended - started).total_seconds())
        elif started is not None and status == "running":
            took = duration((moment - started).total_seconds())
        result.append((name, status, took))
    return result


_STATUS_STYLE = {"succeeded": "green", "failed": "bold red", "running": "yellow", "not-started": "dim"}
_STATUS_MARK = {"succeeded": "✓", "failed": "✗", "not-started": "·", "skipped": "-"}


def steps_table(deployment: Json, *, live: bool) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("STEP", "STATUS", "DURATION"):
        table.add_column(column)
    for name, status, took in steps_of(deployment):
        cell: RenderableType
        if live and status == "running":
            cell = Spinner("dots", text=Text(status, style=_STATUS_STYLE["running"]))
        else:
            mark = _STATUS_MARK.get(status, "")
            cell = Text(f"{mark} {status}".strip(), style=_STATUS_STYLE.get(status, ""))
        table.add_row(Text(name), cell, Text(took))
    return table


# -- the end ---------------------------------------------------------------------------------------------------


def status_line(deployment_id: str, deployment: Json) -> str:
    status = str(deployment.get("status"))
    reason = deployment.get("reason")
    if status == "succeeded":
        return f"deployment {deployment_id} succeeded"
    return f"deployment {deployment_id} {status}: {reason}" if reason else f"deployment {deployment_id} {status}"


def exit_code(deployment: Json) -> int:
    return 0 if deployment.get("status") == "succeeded" else 1


@dataclass
class Deadline:
    """``--timeout`` as a monotonic deadline (None: follow until the deployment ends)."""

    seconds: float | None
    start: float = field(default_factory=time.monotonic)

    def check(self, deployment_id: str) -> None:
        if self.seconds is not None and time.monotonic() - self.start > self.seconds:
            raise CliError(
                f"deployment {deployment_id} had not ended after {self.seconds:g} seconds; it goes on running "
                "(follow it again with `cascade logs STACK ID --follow`)"
            )


def final_state(api: ApiClient, ref: StackRef, deployment_id: str, deadline: Deadline) -> Json:
    """The deployment once its status is terminal (the log has ended, so this is at most a short wait)."""
    settle = time.monotonic() + SETTLE_SECONDS
    while True:
        deployment = get_deployment(api, ref, deployment_id)
        if deployment.get("status") in TERMINAL:
            return deployment
        if time.monotonic() > settle:
            raise CliError(
                f"the log of deployment {deployment_id} ended but its status is still {deployment.get('status')!r}"
            )
        deadline.check(deployment_id)
        time.sleep(POLL_SECONDS)


# -- following -------------------------------------------------------------------------------------------------


def follow_plain(
    api: ApiClient,
    ref: StackRef,
    deployment_id: str,
    *,
    emit: Callable[[Json], None],
    timeout: float | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> Json:
    """Print lines as they arrive until the log ends; the finished deployment."""
    deadline = Deadline(timeout)
    stream = LogStream(api, ref, deployment_id)
    while not stream.ended:
        lines = stream.fetch()
        for line in lines:
            emit(line)
        if not stream.ended:
            deadline.check(deployment_id)
            if not lines:
                time.sleep(poll_seconds)
    return final_state(api, ref, deployment_id, deadline)


class _StepsView:
    """What the live display shows; the refresh thread renders it, the main thread swaps the deployment."""

    def __init__(self, ref: StackRef, deployment_id: str) -> None:
        self.title = f"{ref} deployment {deployment_id}"
        self.deployment: Json = {}

    def __rich__(self) -> RenderableType:
        deployment = self.deployment
        status = str(deployment.get("status") or "…")
        return Group(Text.assemble((self.title, "bold"), f": {status}"), steps_table(deployment, live=True))


def follow_live(
    api: ApiClient,
    ref: StackRef,
    deployment_id: str,
    *,
    out: Console,
    timeout: float | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> Json:
    """The steps as a live table at the bottom of the terminal, log lines scrolling above it."""
    deadline = Deadline(timeout)
    stream = LogStream(api, ref, deployment_id)
    view = _StepsView(ref, deployment_id)
    view.deployment = get_deployment(api, ref, deployment_id)
    checked = time.monotonic()
    with Live(view, console=out, refresh_per_second=8, transient=False):
        while True:
            lines = stream.fetch()
            for line in lines:
                out.print(rich_line(line), soft_wrap=True)
            if stream.ended:
                break
            if time.monotonic() - checked >= poll_seconds:  # the steps, also while lines pour in
                view.deployment = get_deployment(api, ref, deployment_id)
                checked = time.monotonic()
            deadline.check(deployment_id)
            if not lines:
                time.sleep(poll_seconds)
        view.deployment = final_state(api, ref, deployment_id, deadline)
    return view.deployment


def is_live_terminal(out: Console) -> bool:
    return out.is_terminal and not out.is_dumb_terminal


def interrupted(ref: StackRef, deployment_id: str) -> typer.Exit:
    """Ctrl-C stops following, not the deployment: say so, exit 130 like a shell."""
    typer.echo(
        f"stopped following; deployment {deployment_id} goes on. Resume with: cascade logs {ref} {deployment_id} --follow",
        err=True,
    )
    return typer.Exit(130)


def finish(deployment_id: str, deployment: Json, *, to_stderr: bool = False) -> typer.Exit:
    """Print the final status line; the Exit carrying 0 (succeeded) or 1 (failed, skipped)."""
    typer.echo(status_line(deployment_id, deployment), err=to_stderr)
    return typer.Exit(exit_code(deployment))
