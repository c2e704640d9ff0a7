"""The runner's slots: claim, run, and run the next job a finish call brought without claiming it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from stackcascade.runner.agent import Runner
from stackcascade.runner.client import ProtocolError
from stackcascade.runner.job import START_STEPS


class Server:
    """The runner protocol as one slot sees it: ``claims`` answered in order (then nothing, and the test's
    stop is set), and ``handed`` given to the finish calls that ask for a next job."""

    base_url = "http://stackcascade.local"

    def __init__(self, claims: list[dict[str, Any]], handed: list[dict[str, Any]], stop: asyncio.Event) -> None:
        self.claims = claims
        self.handed = handed
        self.stop = stop
        self.calls: list[tuple[str, str | None, bool]] = []  # (call, deployment, asked for the next job)
        self.stop_on_finish = False
        self.stop_on_heartbeat: Path | None = None  # set: the first heartbeat stops the runner, then makes this
        self.runner_id = "test/0"
        self.claim_errors: list[Exception] = []  # raised by the first claims, in order
        self.claim_keys: list[tuple[str, bool]] = []  # (key, retried) of each claim

    async def claim(
        self, wait_seconds: float, start: list[dict[str, Any]] | None = None, *, key: str, retried: bool = False
    ) -> dict[str, Any] | None:
        self.calls.append(("claim", None, False))
        self.claim_keys.append((key, retried))
        if self.claim_errors:
            raise self.claim_errors.pop(0)
        if self.claims:
            return self.claims.pop(0)
        self.stop.set()
        return None

    async def heartbeat(self, deployment_id: str) -> bool:
        if self.stop_on_heartbeat is not None:
            self.stop.set()  # SIGTERM while the deployment runs
            self.stop_on_heartbeat.touch()  # lets the deployment's command end, after the stop
        return False

    async def finish(
        self,
        deployment_id: str,
        result: dict[str, Any],
        next_start: list[dict[str, Any]] | None = None,
        **_retry: object,
    ) -> dict[str, Any] | None:
        assert result["status"] == "succeeded", result
        self.calls.append(("finish", deployment_id, next_start is not None))
        if next_start is not None:
            assert next_start == START_STEPS
        if self.stop_on_finish:
            self.stop.set()  # the runner is told to stop while this finish is under way
            return self.handed.pop(0) if self.handed else None
        return self.handed.pop(0) if next_start is not None and self.handed else None

    async def close(self) -> None:
        pass


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "Cascade.yaml").write_text("operations:\n  update: 'true'\n")
    return directory


def _job(project: Path, deployment_id: str) -> dict[str, Any]:
    return {
        "deploymentId": deployment_id,
        "org": "acme",
        "project": "net",
        "stack": deployment_id,
        "operation": "update",
        "version": 1,
        "source": {"repoUrl": str(project)},
        "deploymentToken": "csc_deployment_token",
        "leaseSeconds": 60,
        "protocol": 3,
        "started": True,
    }


async def _run_slot(server: Server, tmp_path: Path) -> Runner:
    runner = Runner(
        lambda _name: server,  # type: ignore[arg-type,return-value]
        work_dir=tmp_path / "work",
        base_env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        grace_seconds=30,
    )
    await asyncio.wait_for(runner.run(server.stop), 60)
    return runner


async def test_a_job_handed_over_with_a_finish_runs_without_a_claim(project: Path, tmp_path: Path) -> None:
    stop = asyncio.Event()
    server = Server([_job(project, "first")], [_job(project, "second"), _job(project, "third")], stop)
    runner = await _run_slot(server, tmp_path)
    assert server.calls == [
        ("claim", None, False),
        ("finish", "first", True),
        ("finish", "second", True),
        ("finish", "third", True),
        ("claim", None, False),  # the third finish brought nothing: back to claiming
    ]
    assert runner.completed == 3


async def test_a_stopping_runner_runs_the_job_it_was_handed_but_asks_for_no_more(project: Path, tmp_path: Path) -> None:
    stop = asyncio.Event()
    server = Server([_job(project, "first")], [_job(project, "second")], stop)
    server.stop_on_finish = True
    runner = await _run_slot(server, tmp_path)
    # "second" was leased to this runner by the finish that crossed the stop: it runs (within the grace
    # period), and its own finish asks for nothing; no claim follows.
    assert server.calls == [("claim", None, False), ("finish", "first", True), ("finish", "second", False)]
    assert runner.completed == 2


async def test_a_runner_told_to_stop_while_a_deployment_runs_asks_its_finish_for_no_next_job(tmp_path: Path) -> None:
    # Asked when the finish is sent, not when the job began: a stopping runner takes no new work (it did,
    # and then cancelled that work when its grace period ran out).
    flag = tmp_path / "stopped"
    project = tmp_path / "waits"
    project.mkdir()
    (project / "Cascade.yaml").write_text(f"operations:\n  update: 'while [ ! -e {flag} ]; do sleep 0.02; done'\n")
    stop = asyncio.Event()
    server = Server([{**_job(project, "first"), "leaseSeconds": 0.6}], [_job(project, "second")], stop)
    server.stop_on_heartbeat = flag
    runner = await _run_slot(server, tmp_path)
    assert server.calls == [("claim", None, False), ("finish", "first", False)]
    assert server.handed, "the next job was never asked for"
    assert runner.completed == 1


async def test_a_claim_whose_every_attempt_failed_is_asked_again_with_its_key(project: Path, tmp_path: Path) -> None:
    """It may have leased a job whose answer never came back: the same key, marked as a retry, gets it."""
    stop = asyncio.Event()
    server = Server([_job(project, "first")], [], stop)
    server.claim_errors = [OSError("connection refused"), OSError("connection refused")]
    runner = await _run_slot(server, tmp_path)
    (key, retried), (key_again, retried_again), (key_last, retried_last), (after, retried_after) = server.claim_keys
    assert not retried and key_again == key_last == key and retried_again and retried_last
    assert after != key and not retried_after  # answered: the next claim is a new one
    assert runner.completed == 1


async def test_a_refused_claim_is_not_asked_again_as_a_retry(project: Path, tmp_path: Path) -> None:
    stop = asyncio.Event()
    server = Server([], [], stop)
    server.claim_errors = [ProtocolError(401, "invalid or expired token")]
    await _run_slot(server, tmp_path)
    (key, _), (key_again, retried_again) = server.claim_keys
    assert key_again != key and not retried_again
