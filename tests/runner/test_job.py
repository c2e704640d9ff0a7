"""One deployment on a runner, against a recording client: the calls it makes with each protocol version."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx2
import pytest

from stackcascade.runner.client import ProtocolError
from stackcascade.runner.job import START_STEPS, JobRun


class Recorder:
    """The parts of RunnerClient a JobRun uses; every call is recorded as (name, summary)."""

    base_url = "http://stackcascade.local"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.next_start: list[dict[str, Any]] | None = None
        self.returned: dict[str, Any] | None = None

    async def start(self, deployment_id: str, steps: list[dict[str, Any]] | None = None) -> None:
        self.calls.append(("start", _steps(steps or [])))

    async def steps(self, deployment_id: str, steps: list[dict[str, Any]]) -> None:
        self.calls.append(("steps", _steps(steps)))

    async def logs(
        self, deployment_id: str, lines: list[dict[str, Any]], steps: list[dict[str, Any]] | None = None
    ) -> None:
        self.calls.append(("logs", (len(lines), _steps(steps or []))))

    async def heartbeat(self, deployment_id: str) -> bool:
        return False

    async def finish(
        self,
        deployment_id: str,
        result: dict[str, Any],
        next_start: list[dict[str, Any]] | None = None,
        **_retry: object,
    ) -> dict[str, Any] | None:
        self.calls.append(("finish", result))
        self.next_start = next_start
        return {"deploymentId": "the-next-one"} if next_start is not None else None


def _steps(steps: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(step["index"], step["status"]) for step in steps]


def _job(project: Path, **extra: Any) -> dict[str, Any]:
    return {
        "deploymentId": "0f8c2a52-5b7e-4c55-9a43-3c4b1c8d9e01",
        "org": "acme",
        "project": "net",
        "stack": "prod",
        "operation": "update",
        "version": 1,
        "source": {"repoUrl": str(project)},
        "deploymentToken": "csc_deployment_token",
        "leaseSeconds": 60,
        **extra,
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    update = """echo hello; printf '{"url": "https://x"}' > "$CASCADE_OUTPUTS"
"""
    (directory / "Cascade.yaml").write_text(f"operations:\n  update: |\n    {update}")
    return directory


async def _run(
    job: dict[str, Any], tmp_path: Path, *, claim_next: bool = False, work_dir: Path | None = None
) -> Recorder:
    client = Recorder()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    work = tmp_path / "work" if work_dir is None else work_dir
    run = JobRun(client, job, work_dir=work, base_env=env)  # type: ignore[arg-type]
    client.returned = await run.execute(claim_next=claim_next)
    return client


async def test_protocol_2_a_started_short_run_is_reported_by_the_finish_call_alone(
    project: Path, tmp_path: Path
) -> None:
    client = await _run(_job(project, protocol=2, started=True), tmp_path)
    [(name, result)] = client.calls
    assert name == "finish"
    assert result["status"] == "succeeded" and result["outputs"] == {"url": "https://x"}
    assert _steps(result["steps"]) == [
        (0, "succeeded"),
        (1, "running"),
        (1, "succeeded"),
        (2, "running"),
        (2, "succeeded"),
        (3, "running"),
        (3, "succeeded"),
    ]
    assert all(isinstance(step["at"], float) for step in result["steps"][:-1])
    assert "hello" in [line["line"] for line in result["lines"]]


async def test_protocol_2_a_failure_reports_the_failed_step_with_finish(tmp_path: Path) -> None:
    client = await _run(_job(tmp_path / "missing", protocol=2, started=True), tmp_path)
    [(name, result)] = client.calls
    assert name == "finish"
    assert result["status"] == "failed" and "does not exist" in result["reason"]
    assert _steps(result["steps"]) == [(0, "failed")]
    assert any(line["line"].startswith("error: ") for line in result["lines"])


async def test_a_failure_reason_is_masked_like_the_log(tmp_path: Path) -> None:
    # a reason may quote what the settings say, e.g. a source path that holds a secret value
    missing = tmp_path / "hunter2-not-here"
    client = await _run(_job(missing, protocol=2, started=True, secretValues=["hunter2"]), tmp_path)
    [(_, result)] = client.calls
    assert result["status"] == "failed" and "does not exist" in result["reason"]
    assert "hunter2" not in result["reason"] and "[secret]" in result["reason"]
    assert all("hunter2" not in line["line"] for line in result["lines"])


async def test_a_relative_work_dir_still_gives_the_steps_paths_that_resolve_inside_the_workspace(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `cascade serve` defaults to the data dir `.cascade`, so its local runners get a relative work dir;
    # the step runs in the workspace, where a relative CASCADE_OUTPUTS would not exist.
    monkeypatch.chdir(tmp_path)
    client = await _run(_job(project, protocol=2, started=True), tmp_path, work_dir=Path(".cascade") / "runner")
    [(name, result)] = client.calls
    assert name == "finish"
    assert result["status"] == "succeeded", result.get("reason")
    assert result["outputs"] == {"url": "https://x"}


async def test_an_older_server_gets_a_start_call_and_a_call_per_transition(project: Path, tmp_path: Path) -> None:
    client = await _run(_job(project), tmp_path)
    names = [name for name, _ in client.calls]
    assert names == ["start", "steps", "steps", "steps", "logs", "finish"]
    assert client.calls[0] == ("start", [(0, "running")])
    assert [summary for name, summary in client.calls if name == "steps"] == [
        [(0, "succeeded"), (1, "running")],
        [(1, "succeeded"), (2, "running")],
        [(2, "succeeded"), (3, "running")],
    ]
    finish = client.calls[-1][1]
    assert _steps(finish["steps"]) == [(3, "succeeded")] and "lines" not in finish


async def test_protocol_3_the_finish_call_asks_for_the_next_job_and_returns_it(project: Path, tmp_path: Path) -> None:
    client = await _run(_job(project, protocol=3, started=True), tmp_path, claim_next=True)
    [(name, result)] = client.calls
    assert name == "finish" and result["status"] == "succeeded"
    assert client.next_start == START_STEPS  # the next deployment starts with the claim, as with a claim call
    assert client.returned == {"deploymentId": "the-next-one"}


async def test_an_older_server_is_not_asked_for_the_next_job_with_the_finish(project: Path, tmp_path: Path) -> None:
    client = await _run(_job(project, protocol=2, started=True), tmp_path, claim_next=True)
    assert [name for name, _ in client.calls] == ["finish"]
    assert client.next_start is None and client.returned is None


async def test_a_run_not_asked_to_claim_next_does_not(project: Path, tmp_path: Path) -> None:
    client = await _run(_job(project, protocol=3, started=True), tmp_path)
    assert client.next_start is None and client.returned is None


class Outage(Recorder):
    """The server away for a while: the first heartbeats and finish calls fail as a lost connection does."""

    def __init__(self, failing_heartbeats: int, failing_finishes: int) -> None:
        super().__init__()
        self.failing_heartbeats = failing_heartbeats
        self.failing_finishes = failing_finishes
        self.heartbeats = 0
        self.finishes: list[tuple[str | None, bool]] = []  # (claim key, retried) of each finish call

    async def heartbeat(self, deployment_id: str) -> bool:
        self.heartbeats += 1
        if self.heartbeats <= self.failing_heartbeats:
            raise httpx2.ConnectError("connection refused")
        return False

    async def finish(
        self,
        deployment_id: str,
        result: dict[str, Any],
        next_start: list[dict[str, Any]] | None = None,
        *,
        claim_key: str | None = None,
        retried: bool = False,
    ) -> dict[str, Any] | None:
        self.finishes.append((claim_key, retried))
        if len(self.finishes) <= self.failing_finishes:
            raise httpx2.ConnectError("connection refused")
        return await super().finish(deployment_id, result, next_start)


async def test_a_deployment_is_reported_through_a_server_outage(tmp_path: Path) -> None:
    # Heartbeats fail while the server restarts, then succeed; the finish fails twice, then arrives. The
    # deployment is reported as it ended (it used to end "runner lost": the heartbeat task died with the
    # first lost connection, and its error stopped the finish from being sent at all).
    flag = tmp_path / "renewed"
    project = tmp_path / "project"
    project.mkdir()
    (project / "Cascade.yaml").write_text(f"operations:\n  update: 'while [ ! -e {flag} ]; do sleep 0.02; done'\n")
    client = Outage(failing_heartbeats=2, failing_finishes=2)

    async def renewed_after_the_outage(deployment_id: str) -> bool:
        answer = await Outage.heartbeat(client, deployment_id)
        flag.touch()  # a heartbeat got through: the command may end now
        return answer

    client.heartbeat = renewed_after_the_outage  # type: ignore[method-assign]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    run = JobRun(
        client, _job(project, protocol=3, started=True, leaseSeconds=0.6), work_dir=tmp_path / "w", base_env=env
    )  # type: ignore[arg-type]
    run.report_retry_delay = 0.01
    returned = await asyncio.wait_for(run.execute(claim_next=True), 30)
    assert client.heartbeats >= 3
    [(_finish, result)] = [call for call in client.calls if call[0] == "finish"]
    assert result["status"] == "succeeded"
    (key, retried), *again = client.finishes
    assert len(again) == 2 and not retried
    assert all(again_key == key and again_retried for again_key, again_retried in again), "the same finish, sent again"
    assert returned == {"deploymentId": "the-next-one"}


async def test_a_finish_refused_by_the_server_is_not_sent_again(project: Path, tmp_path: Path) -> None:
    class Refused(Recorder):
        finishes = 0

        async def finish(self, deployment_id: str, result: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            self.finishes += 1
            raise ProtocolError(409, "deployment is no longer running")

    client = Refused()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    run = JobRun(client, _job(project, protocol=2, started=True), work_dir=tmp_path / "w", base_env=env)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        await run.execute()
    assert client.finishes == 1
