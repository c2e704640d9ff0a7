"""A runner killed with SIGKILL leaves no step running: real runner processes, real step process groups.

Each deployment's update command (bash, its group's leader) starts a background ``sleep`` in its group,
writes both pids and waits. The runner is then killed with SIGKILL: its watchdog stops the groups at
once; without the watchdog (it died too) the next runner on the work dir stops them before it claims
anything. A live runner's groups are never touched by another runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stackcascade.runner.agent import Runner
from tests.runner.helpers import pid_gone, wait_until
from tests.runner.orphan_runner import job

SCRIPT = Path(__file__).with_name("orphan_runner.py")
ROOT = Path(__file__).parents[2]
FIRST = "5d1f0c9e-0000-4000-8000-00000000aaaa"
SECOND = "5d1f0c9e-0000-4000-8000-00000000bbbb"
UPDATE = (
    'sleep 300 & echo $! > "$PIDS/$CASCADE_DEPLOYMENT_ID.child"; '
    'echo $$ > "$PIDS/$CASCADE_DEPLOYMENT_ID.tmp"; '
    'mv "$PIDS/$CASCADE_DEPLOYMENT_ID.tmp" "$PIDS/$CASCADE_DEPLOYMENT_ID.leader"; wait'
)


@dataclass
class Step:
    """One deployment's process group: its leader (bash) and a background child (sleep)."""

    leader: int
    child: int

    def alive(self) -> bool:
        return not pid_gone(self.leader, "bash") and not pid_gone(self.child, "sleep")

    def gone(self) -> bool:
        return pid_gone(self.leader, "bash") and pid_gone(self.child, "sleep")

    def kill(self) -> None:
        for pid, name in ((self.leader, "bash"), (self.child, "sleep")):
            if not pid_gone(pid, name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@dataclass
class RunnerProcess:
    proc: subprocess.Popen[bytes]
    watchdog: int  # 0: none
    steps: dict[str, Step]
    stderr: Path

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "Cascade.yaml").write_text(f"operations:\n  update: '{UPDATE}'\n")
    return directory


@pytest.fixture
def cleanup() -> Iterator[list[RunnerProcess]]:
    """Whatever a failing test left: runners, watchdogs and steps are killed by pid."""
    started: list[RunnerProcess] = []
    yield started
    for runner in started:
        if runner.proc.poll() is None:
            runner.kill()
        if runner.watchdog and not pid_gone(runner.watchdog, "python3"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(runner.watchdog, signal.SIGKILL)
        for step in runner.steps.values():
            step.kill()


async def start_runner(
    work_dir: Path, project: Path, ids: list[str], pids: Path, started: list[RunnerProcess]
) -> RunnerProcess:
    pids.mkdir(exist_ok=True)
    stderr = work_dir.with_name(work_dir.name + ".stderr")
    work_dir.mkdir(parents=True, exist_ok=True)
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(work_dir), str(project), *ids],
            env={**os.environ, "PIDS": str(pids), "PYTHONPATH": str(ROOT / "src")},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    runner = RunnerProcess(proc, 0, {}, stderr)
    started.append(runner)
    ready = work_dir / "ready"
    assert await wait_until(lambda: (ready.exists() and ready.read_text() != "") or proc.poll() is not None, timeout=60)
    assert proc.poll() is None, stderr.read_text()
    runner.watchdog = int(ready.read_text())
    for deployment_id in ids:
        runner.steps[deployment_id] = Step(
            int((pids / f"{deployment_id}.leader").read_text()), int((pids / f"{deployment_id}.child").read_text())
        )
    return runner


class IdleClient:
    """A server with ``jobs`` to hand out; then nothing, and the runner is told to stop."""

    base_url = "http://stackcascade.local"

    def __init__(self, jobs: list[dict[str, Any]], stop: asyncio.Event) -> None:
        self.jobs = jobs
        self.stop = stop
        self.finished: list[str] = []

    async def claim(self, wait_seconds: float, start: Any = None, **_key: Any) -> dict[str, Any] | None:
        if self.jobs:
            return self.jobs.pop(0)
        self.stop.set()
        return None

    async def heartbeat(self, _deployment_id: str) -> bool:
        return False

    async def steps(self, *_args: Any) -> None:
        pass

    async def logs(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    async def finish(self, deployment_id: str, result: dict[str, Any], *_args: Any, **_kwargs: Any) -> None:
        assert result["status"] == "succeeded", result
        self.finished.append(deployment_id)

    async def close(self) -> None:
        pass


async def run_runner(work_dir: Path, jobs: list[dict[str, Any]] | None = None) -> IdleClient:
    """A runner in this process on ``work_dir``: it starts (sweeping), runs ``jobs`` and stops."""
    stop = asyncio.Event()
    client = IdleClient(list(jobs or []), stop)
    runner = Runner(
        lambda _name: client,  # type: ignore[arg-type,return-value]
        work_dir=work_dir,
        base_env={"PATH": os.environ["PATH"], "HOME": str(work_dir)},
        grace_seconds=30,
    )
    await asyncio.wait_for(runner.run(stop), 60)
    return client


def _scratch_dirs(work_dir: Path) -> list[str]:
    root = work_dir / "scratch"
    return sorted(entry.name for entry in root.iterdir()) if root.exists() else []


async def test_a_killed_runners_watchdog_stops_its_steps_at_once(
    project: Path, tmp_path: Path, cleanup: list[RunnerProcess]
) -> None:
    runner = await start_runner(tmp_path / "work", project, [FIRST, SECOND], tmp_path / "pids", cleanup)
    steps = list(runner.steps.values())
    assert all(step.alive() for step in steps)

    runner.kill()

    # No runner is started again: the watchdog alone stops both deployments' whole groups.
    assert await wait_until(lambda: all(step.gone() for step in steps), timeout=30)
    assert await wait_until(lambda: SECOND in runner.stderr.read_text(), timeout=10)
    warnings = runner.stderr.read_text()
    assert f"deployment {FIRST}: stopping process group {steps[0].leader} (bash)" in warnings
    assert f"deployment {SECOND}: stopping process group {steps[1].leader} (bash)" in warnings


async def test_the_next_runner_on_the_work_dir_stops_the_steps_a_killed_runner_left_running(
    project: Path, tmp_path: Path, cleanup: list[RunnerProcess], caplog: pytest.LogCaptureFixture
) -> None:
    work_dir = tmp_path / "work"
    runner = await start_runner(work_dir, project, [FIRST], tmp_path / "pids", cleanup)
    step = runner.steps[FIRST]
    if runner.watchdog:  # it died too (say, the OOM killer took both): only the record is left
        os.kill(runner.watchdog, signal.SIGKILL)
    runner.kill()
    # Nothing stopped the step: `pulumi up` would be changing infrastructure on its own now.
    assert step.alive()
    assert len(_scratch_dirs(work_dir)) == 1

    caplog.set_level(logging.WARNING, logger="stackcascade.runner")
    await run_runner(work_dir)

    assert await wait_until(step.gone, timeout=30)
    messages = [record.getMessage() for record in caplog.records]
    assert f"deployment {FIRST}: stopping process group {step.leader} (bash) that a killed runner left running" in (
        messages
    )
    assert _scratch_dirs(work_dir) == []


async def test_a_live_runners_steps_are_never_stopped_by_another_runner(
    project: Path, tmp_path: Path, cleanup: list[RunnerProcess], caplog: pytest.LogCaptureFixture
) -> None:
    work_dir = tmp_path / "work"
    # Two deployments at once (concurrency 2) on a live runner...
    live = await start_runner(work_dir, project, [FIRST, SECOND], tmp_path / "pids", cleanup)
    held = _scratch_dirs(work_dir)
    assert len(held) == 2

    # ...while another runner starts on the same work dir (it sweeps) and runs a deployment of its own (its
    # watchdog registers and forgets that group, then exits when the runner stops), and a third one does the
    # same on a work dir of its own.
    quick = tmp_path / "quick"
    quick.mkdir()
    (quick / "Cascade.yaml").write_text("operations:\n  update: 'true'\n")
    caplog.set_level(logging.WARNING, logger="stackcascade.runner")
    same = await run_runner(work_dir, [job(quick, "5d1f0c9e-0000-4000-8000-00000000cccc")])
    other = await run_runner(tmp_path / "other", [job(quick, "5d1f0c9e-0000-4000-8000-00000000dddd")])
    assert same.finished == ["5d1f0c9e-0000-4000-8000-00000000cccc"]
    assert other.finished == ["5d1f0c9e-0000-4000-8000-00000000dddd"]

    assert all(step.alive() for step in live.steps.values())
    assert _scratch_dirs(work_dir) == held
    assert not [record for record in caplog.records if "process group" in record.getMessage()]
    assert live.proc.poll() is None
