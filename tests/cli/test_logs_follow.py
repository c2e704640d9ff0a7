"""``cascade logs [--follow]`` and ``cascade deploy --follow`` against real deployments run by the local pool."""

from __future__ import annotations

import io
import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx2
import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from stackcascade.cli import follow
from stackcascade.cli.client import ApiClient, Exchange
from stackcascade.cli.connection import Connection
from stackcascade.cli.errors import CliError
from stackcascade.cli.main import app
from stackcascade.cli.refs import StackRef
from tests.cli.cli_support import Cascade, failed, ok
from tests.e2e.helpers import all_logs, cascade_yaml, deploy, git_repo, wait_for, wait_for_log
from tests.support import LiveServer, free_port

CASCADE = Path(sys.executable).parent / "cascade"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
FOLLOW_TIMEOUT = "90"  # --timeout: a deployment that never ends fails the test instead of hanging it


@pytest.fixture
def cascade(pool_server: LiveServer, config_home: Path) -> Cascade:
    return Cascade(pool_server)


@pytest.fixture
def api(pool_server: LiveServer) -> Iterator[httpx2.Client]:
    headers = {"Authorization": f"token {pool_server.admin_token}"}
    with httpx2.Client(base_url=pool_server.url, headers=headers, timeout=30) as client:
        yield client


def new_stack(api: httpx2.Client, org: str, tmp_path: Path, update: str) -> str:
    """org/net/prod deploying a command project whose update runs ``update``."""
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)})
    assert api.post(f"/api/stacks/{org}/net", json={"stackName": "prod"}).status_code == 200
    settings = {"sourceContext": {"git": {"repoUrl": repo, "branch": "main"}}}
    assert api.post(f"/api/stacks/{org}/net/prod/deployments/settings", json=settings).status_code == 200
    return f"{org}/net/prod"


def gated(gate: Path, before: str = "echo first-line", then: str = "") -> str:
    """An update that runs ``before``, waits for ``gate`` to exist, prints after-gate and runs ``then``.

    The test opens the gate only once what ``before`` printed is readable through the API, so those lines
    are stored before the deployment can end, whatever the runner does with its last lines.
    """
    return f"{before}\nwhile [ ! -f {gate} ]; do sleep 0.05; done\necho after-gate\n{then}"


def logged(api: httpx2.Client, stack: str, deployment_id: str) -> list[dict[str, object]]:
    """Every line stored so far, also while the deployment runs (pages until one brings nothing new)."""
    lines: list[dict[str, object]] = []
    token: str | None = None
    for _ in range(100):
        params = {"count": 499} | ({"continuationToken": token} if token else {})
        body = api.get(f"/api/stacks/{stack}/deployments/{deployment_id}/logs", params=params).json()
        lines += body["lines"]
        token = body.get("nextToken")
        if token is None or not body["lines"]:
            return lines
    raise AssertionError("the log did not stop growing")


def wait_logged(api: httpx2.Client, stack: str, deployment_id: str, text: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(line["line"] == text for line in logged(api, stack, deployment_id)):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} was not logged within {seconds}s")


def first_deployment(api: httpx2.Client, stack: str, seconds: float = 30) -> str:
    """The id of the stack's version 1, once `cascade deploy` (in another thread) has queued it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = api.get(f"/api/stacks/{stack}/deployments/version/1")
        if response.status_code == 200:
            return str(response.json()["id"])
        time.sleep(0.05)
    raise AssertionError(f"no deployment of {stack} within {seconds}s")


def printed_log(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("[")]


def expected_lines(api: httpx2.Client, stack: str, deployment_id: str) -> list[str]:
    """What ``cascade logs`` prints for the API's lines: each physical line after its step's name."""
    return [
        f"[{line['header']}] {part}"
        for line in all_logs(api, stack, deployment_id)
        for part in line["line"].splitlines() or [""]
    ]


# -- cascade logs ----------------------------------------------------------------------------------------------

MARKUP = "[bold red]not markup[/bold red] [secret] [/]"


def test_logs_of_a_finished_deployment_prints_every_line_across_pages(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    before = f"for i in $(seq 1 600); do echo line-$i; done\necho '{MARKUP}'"
    stack = new_stack(api, org, tmp_path, gated(gate, before))
    deployment_id = deploy(api, stack)
    wait_logged(api, stack, deployment_id, MARKUP)
    gate.touch()
    assert wait_for(api, stack, deployment_id)["status"] == "succeeded"
    expected = expected_lines(api, stack, deployment_id)
    assert len(expected) > 600  # more than one page of 499

    printed = ok(cascade.as_admin("logs", stack, deployment_id)).stdout.splitlines()
    assert printed == expected
    assert "[operation] line-1" in printed and "[operation] line-600" in printed
    assert f"[operation] {MARKUP}" in printed  # brackets in a line are text, not Rich markup
    assert printed[0].startswith("[source] ")

    by_version = ok(cascade.as_admin("logs", stack, "1")).stdout.splitlines()
    assert by_version == expected

    as_json = [
        json.loads(text) for text in ok(cascade.as_admin("logs", stack, deployment_id, "--json")).stdout.splitlines()
    ]
    assert as_json == all_logs(api, stack, deployment_id)
    assert {"header", "timestamp", "line"} <= set(as_json[0])

    followed = ok(cascade.as_admin("logs", stack, deployment_id, "--follow"))
    assert followed.stdout.splitlines() == [*expected, f"deployment {deployment_id} succeeded"]


def test_logs_without_follow_prints_what_there_is_and_returns_while_the_deployment_runs(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    stack = new_stack(api, org, tmp_path, gated(gate))
    deployment_id = deploy(api, stack)
    try:
        wait_logged(api, stack, deployment_id, "first-line")
        result = ok(cascade.as_admin("logs", stack, deployment_id))
        assert result.stdout.splitlines()[-1] == "[operation] first-line"
        assert api.get(f"/api/stacks/{stack}/deployments/{deployment_id}").json()["status"] == "running"
    finally:
        gate.touch()
    assert wait_for(api, stack, deployment_id)["status"] == "succeeded"


@pytest.mark.parametrize(
    ("then", "status", "code"),
    [("echo '{}' > \"$CASCADE_OUTPUTS\"", "succeeded", 0), ("exit 3", "failed", 1)],
    ids=["success", "failure"],
)
def test_logs_follow_prints_lines_while_the_deployment_runs_and_ends_with_its_status(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path, then: str, status: str, code: int
) -> None:
    gate = tmp_path / "gate"
    stack = new_stack(api, org, tmp_path, gated(gate, then=then))
    deployment_id = deploy(api, stack)
    with ThreadPoolExecutor(max_workers=1) as pool:
        following = pool.submit(cascade.as_admin, "logs", stack, deployment_id, "--follow", "--timeout", FOLLOW_TIMEOUT)
        try:
            wait_for_log(api, stack, deployment_id, "first-line")
            assert api.get(f"/api/stacks/{stack}/deployments/{deployment_id}").json()["status"] == "running"
            assert not following.done(), following.result().output  # it follows: still waiting for the end
        finally:
            gate.touch()
        result: Result = following.result(timeout=120)
    finished = wait_for(api, stack, deployment_id)
    assert finished["status"] == status
    assert result.exit_code == code, result.output
    lines = result.stdout.splitlines()
    assert lines[:-1] == expected_lines(api, stack, deployment_id)
    assert "[operation] first-line" in lines
    if status == "succeeded":
        assert lines[-1] == f"deployment {deployment_id} succeeded"
    else:
        assert lines[-1] == f"deployment {deployment_id} failed: {finished['reason']}"
        assert "exit 3" in lines[-1]


def test_logs_follow_of_a_skipped_deployment_exits_1(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path
) -> None:
    stack = new_stack(api, org, tmp_path, "true")
    assert api.post(f"/api/stacks/{stack}/deployments/pause").status_code == 200  # it stays queued
    deployment_id = deploy(api, stack)
    assert api.post(f"/api/stacks/{stack}/deployments/{deployment_id}/cancel").json()["status"] == "skipped"
    result = cascade.as_admin("logs", stack, deployment_id, "--follow", "--timeout", FOLLOW_TIMEOUT)
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[-1].startswith(f"deployment {deployment_id} skipped")
    as_json = cascade.as_admin("logs", stack, deployment_id, "--follow", "--json")
    assert as_json.exit_code == 1
    assert as_json.stdout == ""  # no lines; the status goes to stderr so stdout stays JSON Lines
    assert as_json.stderr.startswith(f"deployment {deployment_id} skipped")


def test_the_real_executable_streams_each_line_as_it_arrives(
    pool_server: LiveServer, api: httpx2.Client, org: str, tmp_path: Path, config_home: Path
) -> None:
    """The gate opens only once ``cascade logs --follow`` itself has printed the first line."""
    gate = tmp_path / "gate"
    stack = new_stack(api, org, tmp_path, gated(gate, then="exit 0"))
    deployment_id = deploy(api, stack)
    command = [str(CASCADE), "logs", stack, deployment_id, "--follow", "--timeout", FOLLOW_TIMEOUT]
    env = {"PATH": "/usr/bin:/bin", "CASCADE_API_URL": pool_server.url, "CASCADE_TOKEN": pool_server.admin_token}
    seen: queue.Queue[str | None] = queue.Queue()
    printed: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as process:

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                seen.put(line.rstrip("\n"))
            seen.put(None)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            while "[operation] first-line" not in printed:
                line = seen.get(timeout=60)
                assert line is not None, f"the command ended early: {printed}"
                printed.append(line)
            assert process.poll() is None  # still following
        finally:
            gate.touch()
        assert process.wait(timeout=120) == 0
        reader.join(timeout=10)
    while (line := seen.get(timeout=10)) is not None:
        printed.append(line)
    assert printed[-1] == f"deployment {deployment_id} succeeded"
    assert printed[:-1] == expected_lines(api, stack, deployment_id)


def test_logs_errors_are_one_clean_line(cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path) -> None:
    stack = new_stack(api, org, tmp_path, "true")
    failed(cascade.as_admin("logs", stack, "no-such-deployment"), "no-such-deployment", "(404)")
    failed(cascade.as_admin("logs", stack, "7"), "(404)")
    unreachable = f"http://127.0.0.1:{free_port()}"
    result = cascade.run("logs", stack, "some-id", "--follow", "--server", unreachable, "--token", "t")
    failed(result, f"could not reach the server at {unreachable}")


# -- cascade deploy --follow -----------------------------------------------------------------------------------


def deploy_follow_gated(cascade: Cascade, api: httpx2.Client, stack: str, gate: Path, line: str) -> tuple[Result, str]:
    """``cascade deploy STACK --follow`` in a thread; the gate opens once ``line`` is logged."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(cascade.as_admin, "deploy", stack, "--follow", "--timeout", FOLLOW_TIMEOUT)
        try:
            deployment_id = first_deployment(api, stack)
            wait_logged(api, stack, deployment_id, line)
            assert not running.done(), running.result().output
        finally:
            gate.touch()
        return running.result(timeout=120), deployment_id


def test_deploy_follow_prints_lines_steps_and_the_success(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    stack = new_stack(api, org, tmp_path, gated(gate, f"echo 'hello {MARKUP}'"))
    result, deployment_id = deploy_follow_gated(cascade, api, stack, gate, f"hello {MARKUP}")
    ok(result)
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"Queued update of {stack}: version 1", f"  id:      {deployment_id}"]
    assert printed_log(result.stdout) == expected_lines(api, stack, deployment_id)
    assert f"[operation] hello {MARKUP}" in lines
    table = [
        line.split() for line in lines if line.split()[:1] in (["source"], ["pre-run"], ["operation"], ["outputs"])
    ]
    assert [row[:2] for row in table] == [
        ["source", "succeeded"],
        ["pre-run", "succeeded"],
        ["operation", "succeeded"],
        ["outputs", "succeeded"],
    ]
    assert all(re.fullmatch(r"\d+\.\ds", row[2]) for row in table), table  # each with its duration
    assert float(table[2][2][:-1]) > 0  # the operation waited for the gate
    assert lines[-1] == f"deployment {deployment_id} succeeded"
    assert wait_for(api, stack, deployment_id)["status"] == "succeeded"


def test_deploy_follow_of_a_failing_project_exits_1_with_the_reason(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path
) -> None:
    stack = new_stack(api, org, tmp_path, "echo about-to-fail\nexit 3")
    result = cascade.as_admin("deploy", stack, "--follow", "--timeout", FOLLOW_TIMEOUT)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    lines = result.stdout.splitlines()
    deployment_id = lines[1].split()[-1]
    finished = wait_for(api, stack, deployment_id)
    assert finished["status"] == "failed" and "exit 3" in finished["reason"]
    assert printed_log(result.stdout) == expected_lines(api, stack, deployment_id)
    assert any(line.split()[:2] == ["operation", "failed"] for line in lines)
    assert any(line.split()[:2] == ["outputs", "not-started"] for line in lines)
    assert lines[-1] == f"deployment {deployment_id} failed: {finished['reason']}"


def test_deploy_follow_on_a_terminal_shows_a_live_step_table(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # Rich treats stdout as a terminal
    monkeypatch.setenv("COLUMNS", "160")
    gate = tmp_path / "gate"
    stack = new_stack(api, org, tmp_path, gated(gate, f"echo 'live {MARKUP}'", then="exit 4"))
    result, deployment_id = deploy_follow_gated(cascade, api, stack, gate, f"live {MARKUP}")
    assert result.exit_code == 1, result.output
    assert "\x1b[?25l" in result.stdout  # drawn as a live display (the cursor hidden while it runs)
    screen = ANSI.sub("", result.stdout)
    assert f"[operation] live {MARKUP}" in screen
    final_table = screen.rsplit("STEP", 1)[1].splitlines()
    assert [line.split()[:3] for line in final_table[2:6]] == [
        ["source", "✓", "succeeded"],
        ["pre-run", "✓", "succeeded"],
        ["operation", "✗", "failed"],
        ["outputs", "·", "not-started"],
    ]
    finished = wait_for(api, stack, deployment_id)
    assert "exit 4" in finished["reason"]
    assert screen.splitlines()[-1] == f"deployment {deployment_id} failed: {finished['reason']}"


def test_deploy_follow_and_json_do_not_mix(cascade: Cascade, org: str) -> None:
    failed(cascade.as_admin("deploy", f"{org}/net/prod", "--follow", "--json"), "cascade logs")


def test_timeout_without_follow_is_a_usage_error_and_nothing_is_queued(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path
) -> None:
    stack = new_stack(api, org, tmp_path, "echo hello")
    for command in (("deploy", stack), ("logs", stack, "1")):
        result = cascade.as_admin(*command, "--timeout", "5")
        assert result.exit_code == 2, result.output
        assert "'--timeout': it needs --follow" in " ".join(result.output.replace("│", " ").split()), result.output
    assert api.get(f"/api/stacks/{stack}/deployments").json()["deployments"] == []


# -- the follow loop, bounded ----------------------------------------------------------------------------------

REF = StackRef("acme", "net", "prod")


def scripted(*answers: httpx2.Response | Exception, then: httpx2.Response | None = None) -> ApiClient:
    """A client whose requests get ``answers`` in order (an exception is raised as the transport's failure),
    then a copy of ``then`` for ever, or a refused connection."""
    pending = list(answers)

    def handler(request: httpx2.Request) -> httpx2.Response:
        if pending:
            answer = pending.pop(0)
        elif then is not None:
            answer = httpx2.Response(then.status_code, content=then.content, headers=then.headers)
        else:
            answer = httpx2.ConnectError("connection refused")
        if isinstance(answer, Exception):
            raise answer
        return answer

    return ApiClient("http://cascade.test", "token", transport=httpx2.MockTransport(handler))


def page(token: str | None, *lines: str) -> httpx2.Response:
    body: dict[str, object] = {"__type": "DeploymentLogs", "lines": [{"header": "operation", "line": t} for t in lines]}
    if token is not None:
        body["nextToken"] = token
    return httpx2.Response(200, json=body)


def test_following_stops_with_an_error_when_the_server_goes_away() -> None:
    printed: list[str] = []
    api = scripted(page("1", "one"), page("1"), httpx2.ConnectError("connection refused"))
    with api, pytest.raises(CliError, match=r"could not reach the server at http://cascade\.test"):
        follow.follow_plain(api, REF, "d1", emit=lambda line: printed.append(line["line"]), poll_seconds=0.01)
    assert printed == ["one"]


def test_a_repeated_token_with_new_lines_is_an_error_not_an_endless_loop() -> None:
    api = scripted(page("1", "one"), page("1", "one again"))
    with api, pytest.raises(CliError, match="repeated a nextToken"):
        follow.follow_plain(api, REF, "d1", emit=lambda line: None, poll_seconds=0.01)


def test_following_gives_up_after_the_timeout() -> None:
    api = scripted(then=page("1"))
    with api, pytest.raises(CliError) as raised:
        follow.follow_plain(api, REF, "d1", emit=lambda line: None, timeout=0.05, poll_seconds=0.01)
    assert raised.value.message == (
        "deployment d1 had not ended after 0.05 seconds; it goes on running "
        "(follow it again with `cascade logs acme/net/prod d1 --follow`)"  # the real stack and id, to copy
    )


@pytest.mark.parametrize(("seconds", "said"), [(1, "1 second;"), (2, "2 seconds;"), (0, "0 seconds;")])
def test_the_timeout_message_counts_seconds_in_english(seconds: float, said: str) -> None:
    with pytest.raises(CliError, match=f"had not ended after {said}"):
        follow.Deadline(seconds, start=time.monotonic() - 10).check(REF, "d1")


def test_reading_what_is_there_stops_at_the_first_empty_page() -> None:
    api = scripted(page("2", "a", "b"), page("3", "c"), page("3"))
    with api:
        stream = follow.LogStream(api, REF, "d1")
        assert [line["line"] for line in stream.available()] == ["a", "b", "c"]
        assert not stream.ended


# -- live durations on the server's clock ----------------------------------------------------------------------

DATE = "Tue, 01 Jan 2030 12:00:02 GMT"


def at(clock_time: str) -> datetime:
    return datetime.fromisoformat(f"2030-01-01T{clock_time}+00:00")


def test_the_server_clock_is_the_latest_moment_an_answer_showed_it_had_passed() -> None:
    clock = follow.ServerClock()
    assert clock.now(at=50.0) is None
    clock.observe(None)
    clock.observe(Exchange(sent=49.9, received=50.0, date=None), [None, "not a time"])
    assert clock.now(at=50.0) is None  # nothing learnt yet: the caller falls back to the local clock

    clock.observe(Exchange(sent=49.9, received=50.0, date=DATE))
    assert clock.now(at=51.0) == at("12:00:03")  # the Date header, counted on from when it arrived
    clock.observe(Exchange(sent=50.4, received=50.5, date=DATE), ["2030-01-01T12:00:02.800Z"])
    assert clock.now(at=51.0) == at("12:00:03.300")  # a log line written at 02.800 arrived at 50.5
    clock.observe(Exchange(sent=50.6, received=50.7, date="Tue, 01 Jan 2030 12:00:01 GMT"), ["2030-01-01T12:00:00Z"])
    assert clock.now(at=51.0) == at("12:00:03.300")  # older news never sets it back

    clock.observe(Exchange(sent=60.0, received=60.1, date="Tue, 01 Jan 2030 11:00:00 GMT"))
    assert clock.now(at=61.1) == at("11:00:01")  # the server's clock was set back: start again from there


def test_a_running_step_is_timed_on_the_servers_clock_whatever_the_local_clock_says() -> None:
    deployment = {
        "status": "running",
        "jobs": [
            {
                "steps": [
                    {"name": "source", "status": "succeeded", "started": "2030-01-01T12:00:00Z",
                     "lastUpdated": "2030-01-01T12:00:00.300Z"},
                    {"name": "pre-run", "status": "running", "started": "2030-01-01T12:00:00.500Z"},
                ]
            }
        ],
    }  # fmt: skip
    clock = follow.ServerClock()
    clock.observe(Exchange(sent=49.9, received=50.0, date=DATE), follow.deployment_times(deployment))
    clock.observe(Exchange(sent=50.1, received=50.2, date=DATE), ["2030-01-01T12:00:02.800Z"])
    assert follow.steps_of(deployment, now=clock.now(at=51.0)) == [
        ("source", "succeeded", "0.3s"),
        ("pre-run", "running", "3.1s"),  # 12:00:03.6 on the server, started at 00.5
        ("operation", "not-started", ""),
        ("outputs", "not-started", ""),
    ]
    out = Console(width=80, record=True, color_system=None)
    out.print(follow.steps_table(deployment, live=False, now=clock.now(at=52.0)))
    assert [line.split() for line in out.export_text().splitlines()[2:4]] == [
        ["source", "✓", "succeeded", "0.3s"],
        ["pre-run", "running", "4.1s"],
    ]


def test_the_client_keeps_when_an_answer_came_and_its_date() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={}, headers={"Date": DATE})

    with ApiClient("http://cascade.test", "t", transport=httpx2.MockTransport(handler)) as api:
        assert api.last_exchange is None
        before = time.monotonic()
        api.get_stack(REF)
        exchange = api.last_exchange
    assert exchange is not None and exchange.date == DATE
    assert before <= exchange.sent <= exchange.received <= time.monotonic()


def test_the_live_table_reads_the_steps_again_as_soon_as_the_log_moves_on_to_another_step() -> None:
    def snapshot(status: str, *steps: tuple[str, str]) -> httpx2.Response:
        return httpx2.Response(
            200, json={"status": status, "jobs": [{"steps": [{"name": n, "status": s} for n, s in steps]}]}
        )

    def lines(token: str | None, header: str, *texts: str) -> httpx2.Response:
        body: dict[str, object] = {"lines": [{"header": header, "line": text} for text in texts]}
        if token is not None:
            body["nextToken"] = token
        return httpx2.Response(200, json=body)

    answers = {
        "deployment": [
            snapshot("running", ("source", "running")),
            snapshot("running", ("source", "running")),
            snapshot("running", ("source", "succeeded"), ("pre-run", "running")),
            snapshot("succeeded", ("source", "succeeded"), ("pre-run", "succeeded")),
        ],
        "logs": [
            lines("1", "source", "cloning"),
            lines("2", "source", "cloned"),  # the same step: no need to read the steps again
            lines("3", "pre-run", "make"),
            lines(None, "pre-run", "done"),
        ],
    }
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        kind = "logs" if request.url.path.endswith("/logs") else "deployment"
        seen.append(kind)
        return answers[kind].pop(0)

    out = Console(file=io.StringIO(), width=80)
    with ApiClient("http://cascade.test", "t", transport=httpx2.MockTransport(handler)) as api:
        finished = follow.follow_live(api, REF, "d1", out=out, poll_seconds=60)
    assert finished["status"] == "succeeded"
    # Reading the steps only every 60 seconds, the table would have shown source running until the end.
    assert seen == ["deployment", "logs", "deployment", "logs", "logs", "deployment", "logs", "deployment"]


# -- how a follow ends, against a scripted server --------------------------------------------------------------

Answer = httpx2.Response | BaseException
GONE = "could not reach the server at http://cascade.test: connection refused"
LOST_DEPLOYMENT = (
    "stopped following, but deployment d1 goes on on the server: "
    "follow it again with `cascade logs acme/net/prod d1 --follow`"
)
LOST_CASCADE = (
    "stopped following, but cascade c1 goes on on the server: "
    "follow it again with `cascade cascade show c1 --org acme --follow`"
)


def queued() -> httpx2.Response:
    return httpx2.Response(202, json={"id": "d1", "version": 1, "consoleUrl": "http://cascade.test/d1"})


def deployment(status: str, **more: object) -> httpx2.Response:
    return httpx2.Response(200, json={"id": "d1", "status": status, **more})


def cascade_state(status: str, member: str = "running") -> httpx2.Response:
    body = {
        "id": "c1",
        "organization": "acme",
        "status": status,
        "members": [{"stack": "app/prod", "wave": 1, "status": member}],
    }
    return httpx2.Response(200, json=body)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch, config_home: Path) -> Callable[..., None]:
    """``serve(create=[...], deployment=[...], logs=[...], cascade=[...])``: each kind of request gets its answers
    in order (an exception is raised as the transport's), then a refused connection: the server has gone."""
    monkeypatch.setattr(follow, "CASCADE_POLL_SECONDS", 0.01)

    def install(**answers: list[Answer]) -> None:
        def handler(request: httpx2.Request) -> httpx2.Response:
            path = request.url.path
            kind = (
                "create" if request.method == "POST"
                else "logs" if path.endswith("/logs")
                else "cascade" if "/cascades/" in path
                else "deployment"
            )  # fmt: skip
            pending = answers.get(kind) or []
            answer = pending.pop(0) if pending else httpx2.ConnectError("connection refused")
            if isinstance(answer, BaseException):
                raise answer
            return answer

        def client(self: Connection) -> ApiClient:
            return ApiClient(self.server, self.token, transport=httpx2.MockTransport(handler))

        monkeypatch.setattr(Connection, "client", client)

    return install


def run(*args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--server", "http://cascade.test", "--token", "t"])


def test_deploy_follow_says_the_deployment_goes_on_when_the_server_goes_away(serve: Callable[..., None]) -> None:
    serve(create=[queued()], logs=[page("1", "one")])
    result = run("deploy", "acme/net/prod", "--follow")
    assert "[operation] one" in result.stdout.splitlines()
    assert result.stderr == f"error: {GONE}; {LOST_DEPLOYMENT}\n"
    assert result.exit_code == 3, result.output  # not "it failed": nobody knows how it ended


def test_deploy_follow_says_the_cascade_goes_on_when_the_server_goes_away(serve: Callable[..., None]) -> None:
    serve(
        create=[queued()], logs=[page(None, "done")], deployment=[deployment("succeeded", cascadeId="c1")],
        cascade=[cascade_state("running")],
    )  # fmt: skip
    result = run("deploy", "acme/net/prod", "--follow")
    assert "[cascade] app/prod running" in result.stdout.splitlines()
    assert result.stderr == f"error: {GONE}; {LOST_CASCADE}\n"
    assert result.exit_code == 3, result.output  # not "it failed": nobody knows how it ended


def test_logs_and_show_follow_say_what_goes_on_when_the_server_goes_away(serve: Callable[..., None]) -> None:
    serve(deployment=[deployment("running")], logs=[page("1", "one")])
    result = run("logs", "acme/net/prod", "d1", "--follow")
    assert result.stdout == "[operation] one\n"
    assert result.stderr == f"error: {GONE}; {LOST_DEPLOYMENT}\n"
    assert result.exit_code == 3, result.output  # not "it failed": nobody knows how it ended

    serve(cascade=[cascade_state("running"), cascade_state("running")])
    result = run("cascade", "show", "c1", "--org", "acme", "--follow")
    assert result.stderr == f"error: {GONE}; {LOST_CASCADE}\n"
    assert result.exit_code == 3, result.output  # not "it failed": nobody knows how it ended


TIMED_OUT = "deployment d1 had not ended after 0 seconds; it goes on running (follow it again with `cascade logs acme/net/prod d1 --follow`)"


@pytest.mark.parametrize(
    ("args", "answers", "code", "said"),
    [
        pytest.param(
            ("deploy", "acme/net/prod", "--follow"),
            {"create": [queued()], "logs": [page(None, "x")], "deployment": [deployment("succeeded")]},
            0, "", id="deployment-succeeded",
        ),
        pytest.param(
            ("deploy", "acme/net/prod", "--follow"),
            {"create": [queued()], "logs": [page(None, "x")], "deployment": [deployment("failed", reason="exit 3")]},
            1, "", id="deployment-failed",
        ),
        pytest.param(
            ("deploy", "acme/net/prod", "--follow"),
            {"create": [queued()], "logs": [page(None, "x")], "deployment": [deployment("succeeded", cascadeId="c1")],
             "cascade": [cascade_state("failed", "failed")]},
            1, "", id="cascade-member-failed",
        ),
        pytest.param(
            ("deploy", "acme/net/prod", "--follow"),
            {"create": [httpx2.ConnectError("connection refused")]},
            1, f"error: {GONE}\n", id="unreachable-before-queueing",
        ),
        pytest.param(
            ("deploy", "acme/net/prod", "--follow"),
            {"create": [httpx2.Response(400, json={"code": 400, "message": "no source"})]},
            1, "error: no source (400)\n", id="refused-before-queueing",
        ),
        pytest.param(
            ("logs", "acme/net/prod", "d1", "--follow"),
            {"deployment": [httpx2.Response(404, json={"code": 404, "message": "no deployment d1"})]},
            1, "error: no deployment d1 (404)\n", id="logs-of-no-such-deployment",
        ),
        pytest.param(
            ("cascade", "show", "c1", "--org", "acme", "--follow"),
            {},
            1, f"error: {GONE}\n", id="show-unreachable-before-reading",
        ),
        pytest.param(
            ("deploy", "acme/net/prod", "--follow", "--timeout", "0"),
            {"create": [queued()], "logs": [page("1")]},
            3, f"error: {TIMED_OUT}\n", id="deployment-timed-out",
        ),
        pytest.param(
            ("logs", "acme/net/prod", "d1", "--follow", "--timeout", "0"),
            {"deployment": [deployment("running")], "logs": [page("1")]},
            3, f"error: {TIMED_OUT}\n", id="logs-timed-out",
        ),
        pytest.param(
            ("deploy", "acme/net/prod", "--follow", "--timeout", "0"),
            {"create": [queued()], "logs": [page(None, "x")], "deployment": [deployment("succeeded", cascadeId="c1")],
             "cascade": [cascade_state("running")]},
            3, "error: cascade c1 had not ended after 0 seconds; it goes on "
            "(follow it again with `cascade cascade show c1 --org acme --follow`)\n", id="cascade-timed-out",
        ),
        pytest.param(
            ("deploy", "acme/net/prod", "--follow"),
            {"create": [queued()], "logs": [page("1", "one"), httpx2.Response(500, json={"code": 500, "message": "oops"})]},
            3, f"error: oops (500); {LOST_DEPLOYMENT}\n", id="server-error-mid-follow",
        ),
        pytest.param(
            ("deploy", "acme/net/prod", "--follow"),
            {"create": [queued()], "logs": [page("1", "one"), KeyboardInterrupt()]},
            130, "stopped following; deployment d1 goes on. Resume with: cascade logs acme/net/prod d1 --follow\n",
            id="ctrl-c-during-the-deployment",
        ),
        pytest.param(
            ("deploy", "acme/net/prod", "--follow"),
            {"create": [queued()], "logs": [page(None, "x")], "deployment": [deployment("succeeded", cascadeId="c1")],
             "cascade": [cascade_state("running"), KeyboardInterrupt()]},
            130, "stopped following; cascade c1 goes on. Resume with: cascade cascade show c1 --org acme --follow\n",
            id="ctrl-c-during-the-cascade",
        ),
    ],
)  # fmt: skip
def test_the_exit_code_tells_failed_from_unknown(
    serve: Callable[..., None], args: tuple[str, ...], answers: dict[str, list[Answer]], code: int, said: str
) -> None:
    """0 succeeded; 1 ended otherwise, or failed before anything was followed; 3 following stopped before the
    end was known (it goes on); 130 Ctrl-C."""
    serve(**answers)
    result = run(*args)
    assert result.exit_code == code, result.output
    assert code == 0 or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stderr == said


def test_a_usage_error_exits_2_and_the_help_lists_the_exit_codes(serve: Callable[..., None]) -> None:
    assert run("deploy", "acme/net/prod", "--timeout", "5").exit_code == 2
    for command in (("deploy",), ("logs",), ("cascade", "show")):
        shown = " ".join(CliRunner().invoke(app, [*command, "--help"]).stdout.replace("│", " ").split())
        assert "3 if following stopped before the end was known" in shown, command
        assert "130 on Ctrl-C" in shown and "1 if it ended otherwise" in shown, command
