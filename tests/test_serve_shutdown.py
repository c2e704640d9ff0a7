"""Stopping ``cascade serve`` (SIGTERM) while runners long-poll and console pages stream, on both databases.

Its shutdown must answer a waiting claim at once with "no work" (204), end the live streams, and exit
with 0 and no traceback. Before, uvicorn waited its graceful-shutdown timeout (3 s) for them, then
cancelled them: the claim got a 500 and the log a traceback.

To know that a claim really waits inside the server (not a guess with a sleep), the server runs with
the services' debug log on, which says "<runner> waits for work" each time a long poll starts to wait.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2

from stackcascade.runner.client import RunnerClient
from tests.support import free_port
from tests.test_serve import CASCADE, Served, _database_options, _environment, _wait_until_up

# ``cascade serve`` itself, with the debug log of ``stackcascade.services`` on stderr.
SERVE_WITH_DEBUG_LOG = (
    "import logging, sys\n"
    "services = logging.getLogger('stackcascade.services')\n"
    "services.setLevel(logging.DEBUG)\n"
    "services.addHandler(logging.StreamHandler())\n"
    "sys.argv[0] = 'cascade'\n"
    "from stackcascade.cli.main import main\n"
    "main()\n"
)
ADMIN = "csc_stopping_" + "z" * 20
# Under uvicorn's graceful-shutdown timeout (3 s), after which it cancels what is still open.
PROMPTLY = 2.5


class Output:
    """A process's output, read line by line as it comes, so a test can wait for a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        with process.stdout:
            for line in process.stdout:
                with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()

    def wait_for(self, text: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        with self._changed:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line with {text!r} in {seconds} s:\n{self.text}")
                self._changed.wait(left)

    def finish(self) -> str:
        self._thread.join(timeout=30)
        return self.text

    @property
    def text(self) -> str:
        return "".join(self.lines)


@contextmanager
def serve(data_dir: Path, database_url: str, *args: str) -> Iterator[tuple[Served, Output]]:
    port = free_port()
    command = [sys.executable, "-c", SERVE_WITH_DEBUG_LOG, "serve", *_database_options(data_dir, database_url)]
    process = subprocess.Popen(
        [*command, "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_environment({"CASCADE_ADMIN_TOKEN": ADMIN}),
    )
    served = Served(process, f"http://127.0.0.1:{port}")
    output = Output(process)
    try:
        _wait_until_up(served, time.monotonic() + 30)
        yield served, output
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        output.finish()


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``work()`` in a thread; its result (or the exception it raised) and when it came, in the dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except Exception as exc:
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_stopping_answers_waiting_claims_with_no_work_and_ends_live_streams_at_once(
    database_url: str, tmp_path: Path
) -> None:
    with serve(tmp_path, database_url, "--runners", "1") as (served, output), served.client(ADMIN) as api:
        assert api.post("/api/stacks/acme/web", json={"stackName": "prod"}).status_code == 200
        assert api.post("/api/stacks/acme/web/prod/deployments/pause").status_code == 200  # its deployment stays queued
        source = {"git": {"repoUrl": "https://git.invalid/never-cloned.git", "branch": "main"}}
        queued = api.post(
            "/api/stacks/acme/web/prod/deployments", json={"operation": "update", "sourceContext": source}
        )
        assert queued.status_code == 202, queued.text
        runner_token = api.post("/api/tokens", json={"runner": True, "name": "stopping"}).json()["token"]

        def raw_claim() -> httpx2.Response:
            body = {"runnerId": "raw-claim", "waitSeconds": 30, "claimKey": "k1"}
            headers = {"Authorization": f"token {runner_token}"}
            return httpx2.post(served.url + "/api/runner/claim", json=body, headers=headers, timeout=60)

        def runner_claim() -> object:  # what a remote runner makes of the answer (it raises on a 500)
            async def claim() -> object:
                client = RunnerClient(served.url, runner_token, "runner-claim")
                try:
                    return await client.claim(30)
                finally:
                    await client.close()

            return asyncio.run(claim())

        def live_stream(path: str, hello: threading.Event) -> str:
            received = []
            cookies = {"cascade_session": ADMIN}
            with httpx2.stream("GET", served.url + path, cookies=cookies, timeout=60) as response:
                assert response.status_code == 200
                for chunk in response.iter_text():
                    received.append(chunk)
                    hello.set()
            return "".join(received)

        claims = [in_thread(raw_claim), in_thread(runner_claim)]
        hellos = [threading.Event(), threading.Event()]
        streams = [
            in_thread(lambda: live_stream("/acme/~/live", hellos[0])),  # the pages' change stream
            in_thread(lambda: live_stream(f"/acme/web/prod/deployments/{queued.json()['id']}/live", hellos[1])),
        ]
        output.wait_for("/raw-claim waits for work")
        output.wait_for("/runner-claim waits for work")
        assert all(hello.wait(30) for hello in hellos), "the live streams said hello"

        stopped_at = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(timeout=30)
        exited_after = time.monotonic() - stopped_at
        for thread, _ in [*claims, *streams]:
            thread.join(timeout=30)
    text = output.text
    assert served.process.returncode == 0, text
    assert exited_after < PROMPTLY, f"the server took {exited_after:.1f} s to stop:\n{text}"
    (_, raw), (_, runner), (_, changes), (_, log) = *claims, *streams
    assert "error" not in raw, raw
    response = raw["result"]
    assert isinstance(response, httpx2.Response)
    assert response.status_code == 204, f"{response.status_code} {response.text}\n{text}"
    assert "error" not in runner and runner["result"] is None, f"the runner sees no work: {runner}\n{text}"
    for live in (changes, log):
        assert "error" not in live, live
        assert "event: hello" in str(live["result"]) and "event: end" not in str(live["result"])  # they reconnect
    for outcome in (raw, runner, changes, log):
        assert float(outcome["at"]) - stopped_at < PROMPTLY, "answered at once, not at the shutdown timeout"
    assert "Traceback" not in text and "ERROR" not in text, text
    assert "timeout graceful shutdown exceeded" not in text
    assert "stackcascade stopped" in text


def test_a_runner_connected_to_a_server_that_stops_logs_only_that_it_cannot_reach_it(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path}/cascade.db"
    with serve(tmp_path, database_url, "--runners", "0") as (served, output), served.client(ADMIN) as api:
        runner_token = api.post("/api/tokens", json={"runner": True}).json()["token"]
        command = [str(CASCADE), "runner", "--server", served.url, "--name", "stopping-runner", "--grace", "0"]
        runner = subprocess.Popen(
            [*command, "--work-dir", str(tmp_path / "runner")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_environment({"CASCADE_RUNNER_TOKEN": runner_token}),
        )
        runner_output = Output(runner)
        try:
            output.wait_for("/stopping-runner/0 waits for work")
            served.process.send_signal(signal.SIGTERM)
            served.process.wait(timeout=30)
            # Its claim answered, it claims again and finds no server: after its retries, one warning.
            runner_output.wait_for("claim failed", seconds=30)
            runner.send_signal(signal.SIGTERM)
            runner.wait(timeout=60)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
    said = runner_output.finish()
    assert served.process.returncode == 0 and runner.returncode == 0, said
    assert "Traceback" not in said and "ERROR" not in said and "(500)" not in said, said
    warnings = [line for line in said.splitlines() if "claim failed" in line]
    assert warnings and all(line.endswith("claim failed: ConnectError") for line in warnings), said
    assert "runner stopped after 0 deployment(s)" in said
