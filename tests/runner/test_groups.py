"""Process group records: what /proc says, the journal, and never signalling a reused process id."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackcascade.runner import groups
from stackcascade.runner.groups import JOURNAL, Group, GroupLog, leader_start, proc_stat, recorded, replay
from stackcascade.runner.process import run_process
from stackcascade.runner.scratch import sweep
from tests.runner.helpers import Log, make_context, wait_until

DEPLOYMENT = "0f8c2a52-5b7e-4c55-9a43-3c4b1c8d9e01"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process leading a group of its own, as every step process does."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _dead_scratch_dir(tmp_path: Path, *lines: bytes) -> tuple[Path, Path]:
    """A scratch dir a killed runner left (nobody holds it), with ``lines`` in its journal."""
    root = tmp_path / "scratch"
    directory = root / "0f8c2a52-left"
    directory.mkdir(parents=True)
    (directory / JOURNAL).write_bytes(b"".join(lines))
    return root, directory


def test_a_recorded_group_whose_leader_id_now_names_another_process_is_left_alone(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    # The id was recorded for a process started earlier; it has been reused since (pid_max may be 32768)
    # by this sleeper, which leads a group of the same id.
    start = leader_start(sleeper.pid)
    assert start is not None
    root, _ = _dead_scratch_dir(tmp_path, Group(sleeper.pid, start - 1, DEPLOYMENT).started_line())
    caplog.set_level(logging.WARNING, logger="stackcascade.runner")

    assert sweep(root, grace=1.0) == 1

    assert sleeper.poll() is None
    assert not [record for record in caplog.records if "process group" in record.getMessage()]


def test_a_recorded_group_whose_leader_still_has_its_start_time_is_stopped(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    start = leader_start(sleeper.pid)
    assert start is not None
    root, _ = _dead_scratch_dir(tmp_path, Group(sleeper.pid, start, DEPLOYMENT).started_line())
    caplog.set_level(logging.WARNING, logger="stackcascade.runner")

    assert sweep(root, grace=1.0) == 1

    assert sleeper.wait(timeout=10) == -signal.SIGTERM  # asked first, and it went
    assert [record.getMessage() for record in caplog.records] == [
        f"deployment {DEPLOYMENT}: stopping process group {sleeper.pid} (sleep) that a killed runner left running"
    ]


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        ["bash", "-c", "trap '' TERM; echo ready; sleep 300 & wait"], start_new_session=True, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        start = leader_start(proc.pid)
        assert start is not None
        groups.stop_groups([Group(proc.pid, start, DEPLOYMENT)], grace=0.3, why="in a test")
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_group_whose_leader_is_gone_is_named_but_not_signalled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The leader exited (and was reaped) in the instant the runner died, leaving a member in the group:
    # nothing tells that member from one of a group a reused id leads since, so it is only reported.
    proc = subprocess.Popen(["bash", "-c", "sleep 300 & echo $!"], start_new_session=True, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    member = int(proc.stdout.readline())
    proc.stdout.close()
    proc.wait()
    try:
        caplog.set_level(logging.WARNING, logger="stackcascade.runner")
        groups.stop_groups([Group(proc.pid, 12345, DEPLOYMENT)], grace=0.3, why="in a test")
        assert proc_stat(member) is not None and proc_stat(member).state != "Z"  # type: ignore[union-attr]
        assert [record.getMessage() for record in caplog.records] == [
            f"deployment {DEPLOYMENT}: process group {proc.pid} in a test has no leader any more; "
            "not signalled, check it by hand"
        ]
    finally:
        os.kill(member, signal.SIGKILL)


def test_proc_stat_reads_fields_after_a_name_holding_spaces_and_parentheses(tmp_path: Path) -> None:
    odd = tmp_path / "a) b (c"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", odd)
    proc = subprocess.Popen([str(odd), "300"])
    try:
        stat = proc_stat(proc.pid)
        ours = proc_stat(os.getpid())
        assert stat is not None and ours is not None
        assert stat.name == "a) b (c"
        assert stat.state in ("R", "S")
        assert stat.start >= ours.start  # started after this test process, in the same clock ticks
    finally:
        proc.kill()
        proc.wait()
    assert proc_stat(2**22 + 1) is None  # above any pid_max: no such process


def test_the_journal_names_groups_started_and_not_ended_and_skips_a_line_cut_short() -> None:
    one, two, three = Group(10, 5, "a"), Group(11, 6, "b"), Group(12, 7, "c")
    lines = [one.started_line(), two.started_line(), one.ended_line(), three.started_line()[:-4]]
    assert replay(b"".join(lines).splitlines(keepends=True)) == {11: two}


def test_an_end_forgets_a_group_only_with_its_start_time_and_only_as_a_whole_line() -> None:
    old, reused = Group(10, 5, "a"), Group(10, 9, "b")  # the id reused by a group started since
    late_end = [old.started_line(), reused.started_line(), old.ended_line()]
    assert replay(late_end) == {10: reused}  # the late "-" of the old group leaves the new one registered
    cut_end = [Group(1234, 5, "c").started_line(), Group(12, 6, "d").started_line(), b"- 12"]  # "- 1234 5" cut
    assert set(replay(cut_end)) == {1234, 12}


@pytest.mark.skipif(not groups.SUPPORTED, reason="the watchdog runs on Linux only")
def test_a_watchdog_given_up_on_is_killed_not_left_to_stop_the_live_runners_steps(
    sleeper: subprocess.Popen[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    watchdog = groups.Watchdog.start()
    assert watchdog is not None
    start = leader_start(sleeper.pid)
    assert start is not None
    watchdog.started(Group(sleeper.pid, start, DEPLOYMENT))  # a step this (live) runner still runs
    os.kill(watchdog.pid, signal.SIGSTOP)  # the helper stalls: what it is sent piles up
    try:
        short = Group(2**22 + 1, 1, "short")
        for _ in range(200_000):  # a busy runner's short steps, until it gives the helper up
            watchdog.started(short)
            watchdog.ended(short)
            if watchdog._fd is None:
                break
        assert watchdog._fd is None, "the runner never gave the stalled helper up"
        assert "the step watchdog is gone" in caplog.text
    finally:
        os.kill(watchdog.pid, signal.SIGCONT)
    # Had it lived, it would now read the closed pipe as this runner's death and stop the step.
    assert watchdog._proc.wait(timeout=groups.GRACE_SECONDS + 5) != 0
    assert sleeper.poll() is None


async def test_each_step_process_is_journaled_from_its_start_until_its_group_is_gone(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    ctx = make_context({"PATH": os.environ["PATH"]}, log=Log())
    ctx.groups = GroupLog(tmp_path, DEPLOYMENT)
    task = asyncio.create_task(
        run_process(f"echo $$ > {tmp_path}/pid; while [ ! -e {flag} ]; do sleep 0.02; done", cwd=tmp_path, ctx=ctx)
    )
    pid_file = tmp_path / "pid"
    assert await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    pid = int(pid_file.read_text())
    assert recorded(tmp_path) == [Group(pid, leader_start(pid) or -1, DEPLOYMENT)]
    flag.touch()
    assert (await task).exit_code == 0
    assert recorded(tmp_path) == []
    ctx.groups.close()


def test_elsewhere_than_linux_nothing_is_recorded_and_no_watchdog_starts(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(groups, "SUPPORTED", False)
    with GroupLog(tmp_path, DEPLOYMENT) as log:
        assert log.started(sleeper.pid) is None
    assert not (tmp_path / JOURNAL).exists()
    assert groups.Watchdog.start() is None
    assert groups.stop_groups([Group(sleeper.pid, 0, DEPLOYMENT)], grace=0.1, why="in a test") == []
    assert sleeper.poll() is None
