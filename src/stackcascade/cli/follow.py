"""Following a deployment: its log stream (Pulumi's ``nextToken`` protocol), its steps, and how it ended;
following a cascade: its members, wave by wave, until it ends.

Shared by ``cascade logs``, ``cascade deploy --follow`` and ``cascade cascade show --follow``. Log lines
are always printed as plain text (``[step] line``): their content is never read as Rich markup. Every wait
is bounded: a server that goes away is an error on the next request, a server that repeats itself is an
error, and ``--timeout`` bounds the whole follow.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Annotated

import typer
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from stackcascade.cli.client import ApiClient, Exchange, Json, api_path
from stackcascade.cli.errors import CliError
from stackcascade.cli.refs import StackRef

STEP_NAMES = ("source", "pre-run", "operation", "outputs")
TERMINAL = frozenset({"succeeded", "failed", "skipped"})
PAGE_SIZE = 499  # the largest page the API serves
POLL_SECONDS = 0.5
# Once the log stream has ended the deployment is finished; allow its status a moment to show it anyway.
SETTLE_SECONDS = 30.0
# A Date header is the server's time in whole seconds, and a server may refresh it only once a second
# (uvicorn does): an answer is taken to be written less than this long after the second its Date names.
DATE_SLACK_SECONDS = 2.5

FollowTimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        min=0,
        help="With --follow: stop following (exit 3) if the deployment (and any cascade it started) has not ended "
        "by then; it goes on.",
        show_default=False,
    ),
]


def require_follow(follow: bool, timeout: float | None) -> None:
    """``--timeout`` bounds a follow: without ``--follow`` it would do nothing, so it is a usage error."""
    if timeout is not None and not follow:
        raise typer.BadParameter("it needs --follow (it bounds how long --follow waits)", param_hint="'--timeout'")


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
    if not (id_or_version.isascii() and id_or_version.isdigit()):  # "²" is a digit to str.isdigit
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


class ServerClock:
    """The server's time as seen from here, so a running step's duration is counted on the server's clock.

    The final duration of a step is ``lastUpdated - started``, both server times; counting a running
    one from this machine's clock would add the difference between the two clocks. Every answer
    shows a moment the server's clock had passed when it arrived: the timestamps in its body (a log
    line's, a step's start) and its Date header (whole seconds). The latest such moment, carried
    forward by the local monotonic clock, is the estimate: it never runs ahead of the server, so a
    live duration only grows and does not exceed what the server will report. A Date header too early
    for the estimate means the server's clock was set back: the estimate starts again from that answer.
    """

    def __init__(self) -> None:
        self.offset: float | None = None  # server epoch seconds minus time.monotonic()

    def observe(self, exchange: Exchange | None, timestamps: Iterable[object] = ()) -> None:
        """Learn from one answer: when it was sent and received, its Date header and the times in its body."""
        if exchange is None:
            return
        low, high = -math.inf, math.inf
        date = _parse_date(exchange.date)
        if date is not None:
            low = date - exchange.received
            high = date + DATE_SLACK_SECONDS - exchange.sent
        for value in timestamps:
            moment = _parse_time(value)
            if moment is not None:
                low = max(low, moment.timestamp() - exchange.received)
        if low == -math.inf:
            return
        if self.offset is None or self.offset > high:
            self.offset = low
        else:
            self.offset = max(self.offset, low)

    def now(self, at: float | None = None) -> datetime | None:
        """The server's time at the local monotonic time ``at`` (default: now); None before any answer."""
        if self.offset is None:
            return None
        return datetime.fromtimestamp((time.monotonic() if at is None else at) + self.offset, UTC)


def _parse_date(value: str | None) -> float | None:
    """An HTTP Date header as epoch seconds."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def deployment_times(deployment: Json) -> list[object]:
    """Every server time in a deployment: each is a moment the server's clock had passed when it answered."""
    times: list[object] = [deployment.get(key) for key in ("created", "modified", "started", "finished")]
    for job in deployment.get("jobs") or []:
        if isinstance(job, dict):
            times += [job.get("started"), job.get("lastUpdated")]
            steps = [step for step in job.get("steps") or [] if isinstance(step, dict)]
            times += [step.get(key) for step in steps for key in ("started", "lastUpdated")]
    return times


def steps_of(deployment: Json, *, now: datetime | None = None) -> list[tuple[str, str, str]]:
    """(name, status, duration) for the four steps (those not reported yet are not-started), then any others.

    A finished step took ``lastUpdated - started``; a running one has run since ``started`` until ``now``,
    which should be the server's time (``ServerClock``), as both ends of a finished step are.
    """
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


def steps_table(deployment: Json, *, live: bool, now: datetime | None = None) -> Table:
    """The steps with their status and duration; ``now``: the server's time, for the running step."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("STEP", "STATUS", "DURATION"):
        table.add_column(column)
    for name, status, took in steps_of(deployment, now=now):
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


EXIT_LOST_TRACK = 3

EXIT_CODES_HELP = (
    "Exit 0 if it succeeded, 1 if it ended otherwise (or nothing could be started), 3 if following stopped "
    "before the end was known (--timeout, the server unreachable or answering an error: it goes on), "
    "130 on Ctrl-C, 2 for a usage error."
)


class LostTrack(CliError):
    """Following stopped before the end was known (``--timeout``, the server unreachable or answering an error):
    the deployment or cascade goes on on the server, and the message says how to follow it again. Exit code 3,
    so a script can tell "it did not succeed" (1) from "we do not know how it ended"."""

    exit_code = EXIT_LOST_TRACK


@dataclass
class Deadline:
    """``--timeout`` as a monotonic deadline (None: follow until the deployment ends)."""

    seconds: float | None
    start: float = field(default_factory=time.monotonic)

    def expired(self) -> bool:
        return self.seconds is not None and time.monotonic() - self.start > self.seconds

    def check(self, ref: StackRef, deployment_id: str) -> None:
        if self.expired():
            raise LostTrack(
                f"deployment {deployment_id} had not ended after {self.took()}; it goes on running "
                f"(follow it again with `{resume_deployment(ref, deployment_id)}`)"
            )

    def took(self) -> str:
        """``1 second``, ``2.5 seconds``: how long the follow was allowed."""
        seconds = self.seconds or 0
        return f"{seconds:g} second" if seconds == 1 else f"{seconds:g} seconds"


def resume_deployment(ref: StackRef, deployment_id: str) -> str:
    """The command that follows a deployment again."""
    return f"cascade logs {ref} {deployment_id} --follow"


def resume_cascade(org: str, cascade_id: str) -> str:
    """The command that follows a cascade again."""
    return f"cascade cascade show {cascade_id} --org {org} --follow"


@contextmanager
def losing_track(what: str, resume: str) -> Iterator[None]:
    """While following ``what`` (``deployment ID``), an error (the server unreachable, an error answer) also says
    that it goes on on the server and how to follow it again (``resume``): following stopped, not it."""
    try:
        yield
    except LostTrack:  # --timeout: it says so already
        raise
    except CliError as exc:
        raise LostTrack(
            f"{exc.message}; stopped following, but {what} goes on on the server: follow it again with `{resume}`",
            status=exc.status,
        ) from None


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
        deadline.check(ref, deployment_id)
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
            deadline.check(ref, deployment_id)
            if not lines:
                time.sleep(poll_seconds)
    return final_state(api, ref, deployment_id, deadline)


class _StepsView:
    """What the live display shows; the refresh thread renders it, the main thread swaps the deployment."""

    def __init__(self, ref: StackRef, deployment_id: str, clock: ServerClock | None = None) -> None:
        self.title = f"{ref} deployment {deployment_id}"
        self.deployment: Json = {}
        self.clock = clock or ServerClock()

    def __rich__(self) -> RenderableType:
        deployment = self.deployment
        status = str(deployment.get("status") or "…")
        table = steps_table(deployment, live=True, now=self.clock.now())
        return Group(Text.assemble((self.title, "bold"), f": {status}"), table)


def follow_live(
    api: ApiClient,
    ref: StackRef,
    deployment_id: str,
    *,
    out: Console,
    timeout: float | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> Json:
    """The steps as a live table at the bottom of the terminal, log lines scrolling above it.

    The steps are read again every ``poll_seconds``, and at once when the log moves on to another
    step: the server has ended the step before it, and the table shows so without waiting for the poll.
    """
    deadline = Deadline(timeout)
    stream = LogStream(api, ref, deployment_id)
    clock = ServerClock()
    view = _StepsView(ref, deployment_id, clock)

    def read_steps() -> Json:
        deployment = get_deployment(api, ref, deployment_id)
        clock.observe(api.last_exchange, deployment_times(deployment))
        return deployment

    view.deployment = read_steps()
    checked = time.monotonic()
    last_header: str | None = None  # the step of the last line printed
    with Live(view, console=out, refresh_per_second=8, transient=False):
        while True:
            lines = stream.fetch()
            clock.observe(api.last_exchange, [line.get("timestamp") for line in lines])
            for line in lines:
                out.print(rich_line(line), soft_wrap=True)
            if stream.ended:
                break
            headers = [str(line.get("header")) for line in lines]
            moved_on = any(header != before for header, before in zip(headers, [last_header, *headers], strict=False))
            last_header = headers[-1] if headers else last_header
            if moved_on or time.monotonic() - checked >= poll_seconds:  # the steps, also while lines pour in
                view.deployment = read_steps()
                checked = time.monotonic()
            deadline.check(ref, deployment_id)
            if not lines:
                time.sleep(poll_seconds)
        view.deployment = final_state(api, ref, deployment_id, deadline)
    return view.deployment


def is_live_terminal(out: Console) -> bool:
    return out.is_terminal and not out.is_dumb_terminal


def interrupted(ref: StackRef, deployment_id: str) -> typer.Exit:
    """Ctrl-C stops following, not the deployment: say so, exit 130 like a shell."""
    typer.echo(
        f"stopped following; deployment {deployment_id} goes on. Resume with: {resume_deployment(ref, deployment_id)}",
        err=True,
    )
    return typer.Exit(130)


def finish(deployment_id: str, deployment: Json, *, to_stderr: bool = False) -> typer.Exit:
    """Print the final status line; the Exit carrying 0 (succeeded) or 1 (failed, skipped)."""
    typer.echo(status_line(deployment_id, deployment), err=to_stderr)
    return typer.Exit(exit_code(deployment))


# -- cascades --------------------------------------------------------------------------------------------------

CASCADE_POLL_SECONDS = 0.5  # the first wait between two reads of a cascade, and the wait after a change
CASCADE_MAX_POLL_SECONDS = 4.0  # while nothing changes the wait doubles up to this (a gate may wait for hours)
MEMBER_STATUSES = ("succeeded", "failed", "skipped", "awaiting-approval", "running", "queued", "waiting")
_MEMBER_STYLE = {
    "waiting": "dim",
    "awaiting-approval": "bold magenta",
    "queued": "yellow",
    "running": "yellow",
    "succeeded": "green",
    "failed": "bold red",
    "skipped": "cyan",
}
_MEMBER_MARK = {
    "waiting": "·",
    "awaiting-approval": "?",
    "queued": "…",
    "running": "▸",
    "succeeded": "✓",
    "failed": "✗",
    "skipped": "-",
}
_CASCADE_STYLE = {"running": "yellow", "succeeded": "green", "failed": "bold red"}
# A live tree taller than the terminal keeps a line only for members in one of these statuses, trying each in
# turn (what needs attention first) until it fits; the other members of each wave are counted on one line.
COMPACT_LEVELS: tuple[frozenset[str], ...] = (
    frozenset({"awaiting-approval", "failed", "running", "queued", "skipped"}),
    frozenset({"awaiting-approval", "failed", "running"}),
    frozenset({"awaiting-approval", "failed"}),
    frozenset(),
)


def members_of(cascade: Json) -> list[Json]:
    members = cascade.get("members") or []
    return [member for member in members if isinstance(member, dict)]


def member_status(member: Json) -> str:
    """The member's status, but ``running`` for a queued member whose deployment has started.

    The API reports a member as ``queued`` from its deployment's creation until it finishes.
    """
    status = str(member.get("status") or "?")
    if status == "queued" and member.get("started") and not member.get("finished"):
        return "running"
    return status


def member_style(status: str) -> str:
    return _MEMBER_STYLE.get(status, "")


def member_took(member: Json, *, now: datetime | None = None) -> str:
    """How long the member's deployment took, or has run until ``now`` (the server's time, see ServerClock)."""
    started, finished = _parse_time(member.get("started")), _parse_time(member.get("finished"))
    if started is None:
        return ""
    return duration(((finished or now or datetime.now(UTC)) - started).total_seconds())


def cascade_times(cascade: Json) -> list[object]:
    """Every server time in a cascade: each is a moment the server's clock had passed when it answered."""
    times: list[object] = [cascade.get("created"), cascade.get("finished")]
    for member in members_of(cascade):
        times += [member.get("started"), member.get("finished")]
    return times


def member_note(member: Json) -> str:
    """Who approved it and why it waits or was skipped (or how its deployment failed)."""
    notes = []
    if member.get("approvedBy"):
        notes.append(f"approved by {member['approvedBy']}")
    if member.get("reason"):
        notes.append(str(member["reason"]))
    return "; ".join(notes)


def member_line(member: Json) -> str:
    """One plain line: ``[cascade] app/prod succeeded (version 3): approved by alice``."""
    line = f"[cascade] {member.get('stack')} {member_status(member)}"
    if member.get("version") is not None:
        line += f" (version {member['version']})"
    note = member_note(member)
    return f"{line}: {note}" if note else line


def approval_hint(cascade: Json, stacks: list[str]) -> str:
    """How to let members that await approval run (or skip them)."""
    org, cascade_id = cascade.get("organization"), cascade.get("id")
    first = stacks[0] if len(stacks) == 1 else "STACK"
    return (
        f"awaiting approval: {', '.join(stacks)}; let it run with `cascade cascade approve {cascade_id} {first} "
        f"--org {org}` (or skip it with reject)"
    )


def waves_of(cascade: Json) -> list[tuple[int, list[Json]]]:
    """The members grouped by wave, in wave order, each wave in the API's order (by name)."""
    grouped: dict[int, list[Json]] = {}
    for member in members_of(cascade):
        wave = member.get("wave")
        grouped.setdefault(wave if isinstance(wave, int) else -1, []).append(member)
    return sorted(grouped.items())


def cascade_title(cascade: Json) -> Text:
    status = str(cascade.get("status") or "…")
    return Text.assemble(
        (f"cascade {cascade.get('id')}", "bold"),
        f" ({cascade.get('operation')} of {cascade.get('root')}): ",
        (status, _CASCADE_STYLE.get(status, "")),
    )


def cascade_table(cascade: Json, *, now: datetime | None = None) -> Table:
    """The members as a table, grouped by wave (the wave number on the first row of each).

    ``now``: the server's time, for the duration of a running member (this machine's clock may differ).
    """
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("WAVE", "STACK", "STATUS", "VERSION", "DURATION", "NOTE"):
        table.add_column(column, overflow="fold")
    for wave, members in waves_of(cascade):
        for index, member in enumerate(members):
            status = member_status(member)
            version = member.get("version")
            table.add_row(
                Text(str(wave) if index == 0 else ""),
                Text(str(member.get("stack"))),
                Text(f"{_MEMBER_MARK.get(status, '')} {status}".strip(), style=member_style(status)),
                Text("" if version is None else str(version)),
                Text(member_took(member, now=now)),
                Text(member_note(member), style="dim"),
            )
    return table


def status_counts(statuses: Iterable[str]) -> str:
    """``3 succeeded, 1 skipped``: how many of each status, in the order of MEMBER_STATUSES."""
    counts = Counter(statuses)
    ordered = [*MEMBER_STATUSES, *sorted(set(counts) - set(MEMBER_STATUSES))]
    return ", ".join(f"{counts[status]} {status}" for status in ordered if counts[status])


def cascade_tree(cascade: Json, *, live: bool = False, listed: frozenset[str] | None = None) -> Tree:
    """Waves, then members with their status, version and note; running members spin when ``live``.

    ``listed``: only the members in one of these statuses get a line; the others are counted, a line per
    wave (on the wave's own line when none of its members is listed). None: every member gets a line.
    """
    tree = Tree(cascade_title(cascade), guide_style="dim")
    members = [m for m in members_of(cascade) if listed is None or member_status(m) in listed]
    width = max((len(str(m.get("stack"))) for m in members), default=0)
    status_width = max((len(member_status(m)) for m in members), default=0)
    root = cascade.get("root")
    for wave, in_wave in waves_of(cascade):
        wave_members = [m for m in in_wave if listed is None or member_status(m) in listed]
        counted = status_counts(member_status(m) for m in in_wave if listed is not None and m not in wave_members)
        title = Text(f"wave {wave}" + (" (root)" if wave == 0 and root else ""), style="bold")
        if counted and not wave_members:
            title.append(f": {counted}", style="dim")
        branch = tree.add(title)
        for member in wave_members:
            status = member_status(member)
            version = member.get("version")
            label = Text.assemble(
                (str(member.get("stack")).ljust(width), "bold" if member.get("stack") == root else ""),
                "  ",
                (status.ljust(status_width), member_style(status)),
                "  ",
                ("" if version is None else f"v{version}").ljust(5),
                (member_note(member), "dim"),
            )
            label.rstrip()
            if live and status in {"running", "queued"}:
                branch.add(Spinner("dots", text=label, style=member_style(status)))
            else:
                branch.add(Text.assemble((_MEMBER_MARK.get(status, " "), member_style(status)), " ", label))
        if counted and wave_members:
            branch.add(Text(f"+ {counted}", style="dim"))
    return tree


def cascade_summary(cascade: Json) -> str:
    """``cascade ID succeeded: 3 succeeded, 1 skipped``."""
    counts = status_counts(member_status(member) for member in members_of(cascade))
    line = f"cascade {cascade.get('id')} {cascade.get('status')}"
    return f"{line}: {counts}" if counts else line


def cascade_states(
    api: ApiClient,
    org: str,
    cascade_id: str,
    *,
    deadline: Deadline,
    poll_seconds: float = CASCADE_POLL_SECONDS,
    max_poll_seconds: float = CASCADE_MAX_POLL_SECONDS,
) -> Iterator[Json]:
    """The cascade as read now, then again after each wait, until it is no longer running (the last one yielded).

    The wait starts at ``poll_seconds``, doubles up to ``max_poll_seconds`` while nothing changes and
    drops back after a change; ``deadline`` bounds the whole follow.
    """
    wait = poll_seconds
    previous: Json | None = None
    while True:
        cascade = api.get_cascade(org, cascade_id)
        yield cascade
        if cascade.get("status") != "running":
            return
        if deadline.expired():
            raise LostTrack(
                f"cascade {cascade_id} had not ended after {deadline.took()}; it goes on "
                f"(follow it again with `{resume_cascade(org, cascade_id)}`)"
            )
        wait = poll_seconds if cascade != previous else min(wait * 2, max_poll_seconds)
        previous = cascade
        time.sleep(wait)


def follow_cascade_plain(
    api: ApiClient,
    org: str,
    cascade_id: str,
    *,
    emit: Callable[[str], None],
    deadline: Deadline,
    poll_seconds: float = CASCADE_POLL_SECONDS,
    max_poll_seconds: float = CASCADE_MAX_POLL_SECONDS,
) -> Json:
    """A line per member whenever its state changes (every member once at the start); the ended cascade."""
    seen: dict[str, str] = {}
    cascade: Json = {}
    states = cascade_states(
        api, org, cascade_id, deadline=deadline, poll_seconds=poll_seconds, max_poll_seconds=max_poll_seconds
    )
    for cascade in states:
        for member in members_of(cascade):
            line = member_line(member)
            if seen.get(str(member.get("stack"))) != line:
                seen[str(member.get("stack"))] = line
                emit(line)
                if member.get("status") == "awaiting-approval":
                    emit(f"[cascade] {approval_hint(cascade, [str(member.get('stack'))])}")
    return cascade


class _CascadeView:
    """What the live display shows; the refresh thread renders it, the main thread swaps the cascade.

    The approval hint comes first, above the tree, and while the cascade runs a tree taller than the terminal
    is compacted (COMPACT_LEVELS) until it fits: Live would otherwise cut it at the bottom, hiding whatever
    member needs attention there. Once the cascade has ended the tree is complete.
    """

    def __init__(self, cascade: Json) -> None:
        self.cascade = cascade

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        cascade = self.cascade
        live = cascade.get("status") == "running"
        gated = [str(m.get("stack")) for m in members_of(cascade) if m.get("status") == "awaiting-approval"]
        above = [Text(approval_hint(cascade, gated), style="magenta")] if gated else []
        frame = Group(*above, cascade_tree(cascade, live=live))
        for listed in COMPACT_LEVELS if live else ():
            if len(console.render_lines(frame, options.reset_height(), pad=False)) <= options.size.height:
                break
            frame = Group(*above, cascade_tree(cascade, live=live, listed=listed))
        yield frame


def follow_cascade_live(
    api: ApiClient,
    org: str,
    cascade_id: str,
    *,
    out: Console,
    deadline: Deadline,
    poll_seconds: float = CASCADE_POLL_SECONDS,
    max_poll_seconds: float = CASCADE_MAX_POLL_SECONDS,
) -> Json:
    """The cascade as a live tree (waves, then members) until it ends; the ended cascade."""
    states = cascade_states(
        api, org, cascade_id, deadline=deadline, poll_seconds=poll_seconds, max_poll_seconds=max_poll_seconds
    )
    view = _CascadeView(next(states))
    with Live(view, console=out, refresh_per_second=8, transient=False):
        for cascade in states:
            view.cascade = cascade
    return view.cascade


def follow_cascade(api: ApiClient, org: str, cascade_id: str, *, out: Console, deadline: Deadline) -> Json:
    """Live on a terminal; otherwise a line per change, then the members' table."""
    if is_live_terminal(out):
        return follow_cascade_live(api, org, cascade_id, out=out, deadline=deadline)
    cascade = follow_cascade_plain(api, org, cascade_id, emit=typer.echo, deadline=deadline)
    out.print(cascade_table(cascade))
    return cascade


def cascade_interrupted(org: str, cascade_id: str) -> typer.Exit:
    """Ctrl-C stops following, not the cascade."""
    typer.echo(
        f"stopped following; cascade {cascade_id} goes on. Resume with: {resume_cascade(org, cascade_id)}",
        err=True,
    )
    return typer.Exit(130)


def cascade_finish(cascade: Json) -> typer.Exit:
    """Print the summary line; the Exit carrying 0 (the cascade succeeded) or 1."""
    typer.echo(cascade_summary(cascade))
    return typer.Exit(0 if cascade.get("status") == "succeeded" else 1)
