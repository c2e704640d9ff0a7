"""One deployment on a runner, against a recording client: the calls it makes with each protocol version."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

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
        self, deployment_id: str, result: dict[str, Any], next_start: list[dict[str, Any]] | None = None
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
