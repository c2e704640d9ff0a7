"""run_process: streaming, stopping (cancel, timeout, grace), orphan cleanup, exit codes, environment."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from stackcascade.runner.process import MAX_LINE_BYTES, run_process
from tests.runner.helpers import Log, make_context, pid_gone, wait_until


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}


async def test_lines_stream_while_the_process_runs(tmp_path: Path, env: dict[str, str]) -> None:
    # The script only finishes once the sink has seen its first line: if lines were delivered at
    # exit rather than as printed, it would wait until the deadline and be reported as timed out.
    flag = tmp_path / "seen-first"

    def on_line(line: str) -> None:
        if line == "first":
            flag.touch()

    log = Log(on_line)
    script = 'echo first; while [ ! -e "$FLAG" ]; do sleep 0.01; done; echo second'
    result = await run_process(script, cwd=tmp_path, ctx=make_context({**env, "FLAG": str(flag)}, log=log, timeout=20))
    assert result.stopped is None
    assert result.exit_code == 0
    assert log.lines == ["first", "second"]


async def test_cancel_stops_the_whole_group_including_a_background_grandchild(
    tmp_path: Path, env: dict[str, str]
) -> None:
    cancel = asyncio.Event()
    pids: list[int] = []

    def on_line(line: str) -> None:
        if line.startswith("bg "):
            pids.append(int(line[3:]))
        if line == "ready":
            cancel.set()

    ctx = make_context(env, log=Log(on_line), cancel=cancel, grace=30)
    started = time.monotonic()
    result = await run_process('sleep 100 & echo "bg $!"; echo ready; wait', cwd=tmp_path, ctx=ctx)
    assert result.stopped == "cancelled"
    assert result.exit_code != 0
    assert time.monotonic() - started < 10  # SIGTERM sufficed: no need to wait out the 30 s grace
    assert len(pids) == 1
    assert await wait_until(lambda: pid_gone(pids[0], "sleep"), timeout=5)


async def test_sigterm_runs_the_programs_own_handler(tmp_path: Path, env: dict[str, str]) -> None:
    cancel = asyncio.Event()
    log = Log(lambda line: cancel.set() if line == "ready" else None)
    script = "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.05; done"
    result = await run_process(script, cwd=tmp_path, ctx=make_context(env, log=log, cancel=cancel, grace=30))
    assert result == type(result)(exit_code=3, stopped="cancelled")
    assert "got-term" in log.lines


async def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path, env: dict[str, str]) -> None:
    cancel = asyncio.Event()
    log = Log(lambda line: cancel.set() if line == "ready" else None)
    script = "trap '' TERM; echo ready; while true; do sleep 0.05; done"
    started = time.monotonic()
    result = await run_process(script, cwd=tmp_path, ctx=make_context(env, log=log, cancel=cancel, grace=0.5))
    elapsed = time.monotonic() - started
    assert result.stopped == "cancelled"
    assert result.exit_code == -9
    assert 0.5 <= elapsed < 10


async def test_deadline_stops_the_process_as_timed_out(tmp_path: Path, env: dict[str, str]) -> None:
    log = Log()
    started = time.monotonic()
    result = await run_process("echo start; sleep 30", cwd=tmp_path, ctx=make_context(env, log=log, timeout=0.5))
    assert result.stopped == "timed out"
    assert log.lines == ["start"]
    assert time.monotonic() - started < 10


async def test_an_already_set_cancel_stops_at_once(tmp_path: Path, env: dict[str, str]) -> None:
    cancel = asyncio.Event()
    cancel.set()
    result = await run_process("sleep 30", cwd=tmp_path, ctx=make_context(env, cancel=cancel))
    assert result.stopped == "cancelled"


async def test_background_children_are_killed_after_a_normal_exit(tmp_path: Path, env: dict[str, str]) -> None:
    log = Log()
    started = time.monotonic()
    # The background sleep keeps the output pipe open; without killing the group we would wait 100 s.
    result = await run_process("sleep 100 & echo $!; exit 0", cwd=tmp_path, ctx=make_context(env, log=log))
    assert result.exit_code == 0
    assert result.stopped is None
    assert time.monotonic() - started < 10
    assert await wait_until(lambda: pid_gone(int(log.lines[0]), "sleep"), timeout=5)


async def test_exit_codes(tmp_path: Path, env: dict[str, str]) -> None:
    assert (await run_process("exit 7", cwd=tmp_path, ctx=make_context(env))).exit_code == 7
    assert (await run_process("", argv=["false"], cwd=tmp_path, ctx=make_context(env))).exit_code == 1
    assert (await run_process("", argv=["true"], cwd=tmp_path, ctx=make_context(env))).exit_code == 0


async def test_a_missing_program_reports_127_and_says_why(tmp_path: Path, env: dict[str, str]) -> None:
    log = Log()
    result = await run_process("", argv=["no-such-program-xyz"], cwd=tmp_path, ctx=make_context(env, log=log))
    assert result.exit_code == 127
    assert len(log.lines) == 1
    assert "no-such-program-xyz" in log.lines[0]


async def test_the_environment_is_exactly_the_given_one(tmp_path: Path) -> None:
    log = Log()
    env = {"PATH": os.environ["PATH"], "ONLY_THIS": "value with spaces"}
    os.environ["LEAK_CHECK_XYZ"] = "leaked"
    try:
        result = await run_process("", argv=["env"], cwd=tmp_path, ctx=make_context(env, log=log))
    finally:
        del os.environ["LEAK_CHECK_XYZ"]
    assert result.exit_code == 0
    assert sorted(log.lines) == sorted(f"{key}={value}" for key, value in env.items())


async def test_shell_argv_and_cwd(tmp_path: Path, env: dict[str, str]) -> None:
    log = Log()
    await run_process('echo "$0"', cwd=tmp_path, ctx=make_context(env, log=log, shell="sh"))
    await run_process('echo "$0"', cwd=tmp_path, ctx=make_context(env, log=log))
    await run_process("", argv=["pwd"], cwd=tmp_path, ctx=make_context(env, log=log))
    assert log.lines == ["sh", "bash", str(tmp_path)]


async def test_stdout_and_stderr_are_merged_in_order(tmp_path: Path, env: dict[str, str]) -> None:
    log = Log()
    await run_process("echo out; echo err >&2; echo out2", cwd=tmp_path, ctx=make_context(env, log=log))
    assert log.lines == ["out", "err", "out2"]


async def test_stdin_is_empty(tmp_path: Path, env: dict[str, str]) -> None:
    log = Log()
    result = await run_process("cat; echo done", cwd=tmp_path, ctx=make_context(env, log=log, timeout=10))
    assert result.stopped is None
    assert log.lines == ["done"]


async def test_line_edge_cases(tmp_path: Path, env: dict[str, str]) -> None:
    log = Log()
    await run_process(
        r"printf 'a\r\nb\n\nbad \377 byte\nno newline at the end'", cwd=tmp_path, ctx=make_context(env, log=log)
    )
    assert log.lines == ["a", "b", "", "bad \ufffd byte", "no newline at the end"]


async def test_very_long_lines_arrive_whole_in_pieces_without_breaking_characters(
    tmp_path: Path, env: dict[str, str]
) -> None:
    log = Log()
    text = "é" * 100_000 + "x" * 70_001  # 270 001 bytes, no newline inside
    (tmp_path / "long.txt").write_text(text + "\nafter\n", encoding="utf-8")
    await run_process("cat long.txt", cwd=tmp_path, ctx=make_context(env, log=log))
    assert log.lines[-1] == "after"
    pieces = log.lines[:-1]
    assert len(pieces) > 1
    assert all(len(piece.encode()) <= MAX_LINE_BYTES for piece in pieces)
    assert "".join(pieces) == text


async def test_a_failing_sink_kills_the_process_and_raises(tmp_path: Path, env: dict[str, str]) -> None:
    class SinkBroke(Exception):
        pass

    async def sink(line: str) -> None:
        if line.startswith("pid "):
            pids.append(int(line[4:]))
            raise SinkBroke

    pids: list[int] = []
    started = time.monotonic()
    with pytest.raises(SinkBroke):
        await run_process("sleep 100 & echo pid $!; wait", cwd=tmp_path, ctx=make_context(env, log=sink))
    assert time.monotonic() - started < 10
    assert await wait_until(lambda: pid_gone(pids[0], "sleep"), timeout=5)


async def test_cancelling_the_calling_task_kills_the_group(tmp_path: Path, env: dict[str, str]) -> None:
    log = Log()
    task = asyncio.create_task(run_process("sleep 100 & echo $!; wait", cwd=tmp_path, ctx=make_context(env, log=log)))
    assert await wait_until(lambda: bool(log.lines), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_until(lambda: pid_gone(int(log.lines[0]), "sleep"), timeout=5)


async def test_a_process_that_escaped_the_group_cannot_hold_the_step_open(tmp_path: Path, env: dict[str, str]) -> None:
    # `setsid` puts the sleep in a session of its own, out of reach of the group kill, still holding
    # our output pipe: reading gives up after a short silence instead of waiting for it.
    log = Log()
    started = time.monotonic()
    result = await run_process("setsid sleep 30 & echo $!; exit 0", cwd=tmp_path, ctx=make_context(env, log=log))
    try:
        assert result.exit_code == 0
        assert time.monotonic() - started < 10
    finally:
        with contextlib.suppress(ProcessLookupError, ValueError, IndexError):
            os.kill(int(log.lines[0]), signal.SIGKILL)


async def test_without_pidfd_the_exit_is_noticed_by_polling(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(_pid: int) -> int:
        raise OSError("pidfd_open is not available here")

    monkeypatch.setattr(os, "pidfd_open", unavailable)
    log = Log()
    result = await run_process("echo polled; exit 5", cwd=tmp_path, ctx=make_context(env, log=log, timeout=20))
    assert result.exit_code == 5 and result.stopped is None
    assert "polled" in log.lines
