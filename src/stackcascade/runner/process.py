"""Run one step process: stream its output line by line, stop it on cancel or timeout, leave no orphans.

Every process gets its own session (so its own process group): cancelling or timing out signals the
whole group (SIGTERM, then SIGKILL after the grace period), and when the main process has exited,
whatever it left running in its group (``sleep 100 &``) is killed so nothing outlives the step.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from stackcascade.runner.types import LineSink, ProcessResult, RunContext

# Lines longer than this are delivered in pieces so one runaway line cannot exhaust memory.
MAX_LINE_BYTES = 64 * 1024
_READ_CHUNK = 64 * 1024
# After the main process is gone and its group killed, give the reader this long without new output
# before giving up on a pipe still held open by something that escaped the group (e.g. a daemon).
_DRAIN_IDLE_SECONDS = 2.0
# The exit is polled (see _supervise): from 1 ms, doubling up to 50 ms, so a short command is noticed
# at once and a long one costs little.
_POLL_FIRST_SECONDS = 0.001
_POLL_SECONDS = 0.05


async def run_process(
    command: str,
    *,
    cwd: Path,
    ctx: RunContext,
    argv: list[str] | None = None,
) -> ProcessResult:
    """Run ``argv`` (exec, no shell) or ``command`` through ``ctx.shell -c``, with exactly ``ctx.env``.

    stdout and stderr are merged; each line (utf-8, undecodable bytes replaced, newline and a trailing
    ``\\r`` stripped) is awaited through ``ctx.on_line`` as soon as it is printed. Returns the exit code
    (negative signal number when a signal ended the process, as asyncio reports it) and ``stopped`` =
    "cancelled" / "timed out" when we stopped it. A program that cannot be started yields exit code 127
    (not found) or 126 (not executable) and one explanatory line, as a shell would.
    """
    args = list(argv) if argv is not None else [ctx.shell or "bash", "-c", command]
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            cwd=cwd,
            env=ctx.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        what = exc.filename if exc.filename is not None else args[0]
        await ctx.on_line(f"cannot start {args[0]}: {exc.strerror or exc} ({what})")
        return ProcessResult(exit_code=127 if isinstance(exc, FileNotFoundError) else 126)

    assert proc.stdout is not None
    pump = _Pump(proc.stdout, ctx.on_line)
    pump_task = asyncio.create_task(pump.run())
    try:
        stopped = await _supervise(proc, ctx, pump_task)
        await pump.drain(pump_task)
    finally:
        # Also reached with an exception (the sink failed, our caller was cancelled): never leave the
        # group running, and release the pipe even if something outside the group still holds it.
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGKILL)
            await _exited(proc, within=5.0)  # SIGKILL cannot be ignored: this is brief
        if not pump_task.done():
            pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump_task
        _close_transport(proc)
    assert proc.returncode is not None
    return ProcessResult(exit_code=proc.returncode, stopped=stopped)


async def _supervise(proc: asyncio.subprocess.Process, ctx: RunContext, pump: asyncio.Task[None]) -> str | None:
    """Wait for the main process, stopping it on cancel or deadline; then kill what is left of its group.

    The exit is noticed through ``returncode`` (polled), not ``proc.wait()``: asyncio's wait() only
    returns once the output pipe is closed too, which a background child may keep open indefinitely.
    If the line sink raised, the group is killed at once and the sink's exception propagates (nobody
    would read the pipe any more, so the process could block until the deadline).
    """
    cancelled = asyncio.create_task(ctx.cancel.wait())
    stopped: str | None = None
    poll = _POLL_FIRST_SECONDS
    try:
        while proc.returncode is None:
            if pump.done() and not pump.cancelled() and (error := pump.exception()) is not None:
                _signal_group(proc.pid, signal.SIGKILL)
                raise error
            if ctx.cancel.is_set():
                stopped = "cancelled"
                break
            remaining = ctx.deadline - time.monotonic()
            if remaining <= 0:
                stopped = "timed out"
                break
            waiting: set[asyncio.Future[Any]] = {cancelled} if pump.done() else {cancelled, pump}
            await asyncio.wait(waiting, timeout=min(remaining, poll), return_when=asyncio.FIRST_COMPLETED)
            poll = min(poll * 2, _POLL_SECONDS)
    finally:
        cancelled.cancel()
    if stopped is not None:
        _signal_group(proc.pid, signal.SIGTERM)
        await _exited(proc, within=max(ctx.grace_seconds, 0.0))
    # SIGKILL the group in every case: the main process if it outlived SIGTERM, and any leftovers
    # (background children) after a normal exit. The group id stays reserved while members remain.
    _signal_group(proc.pid, signal.SIGKILL)
    await _exited(proc, within=None)
    return stopped


async def _exited(proc: asyncio.subprocess.Process, *, within: float | None) -> bool:
    """Whether the main process has exited (and been reaped) within ``within`` seconds (None: no limit)."""
    deadline = None if within is None else time.monotonic() + within
    poll = _POLL_FIRST_SECONDS
    while proc.returncode is None:
        if deadline is not None and time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll)
        poll = min(poll * 2, _POLL_SECONDS)
    return True


def _close_transport(proc: asyncio.subprocess.Process) -> None:
    # asyncio closes the transport itself once the process has exited and the pipe reached EOF; when
    # we stopped reading early (sink failure, escaped pipe holder) it is ours to close.
    transport = getattr(proc, "_transport", None)
    if transport is not None and not transport.is_closing():
        transport.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The group is already empty (ProcessLookupError) or not ours to signal: nothing left to do.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _Pump:
    """Reads the merged output pipe and hands complete lines to the sink as they arrive."""

    def __init__(self, stream: asyncio.StreamReader, sink: LineSink) -> None:
        self._stream = stream
        self._sink = sink
        self._last_read = time.monotonic()
        self._in_sink = False

    async def run(self) -> None:
        buffer = bytearray()
        while True:
            chunk = await self._stream.read(_READ_CHUNK)
            self._last_read = time.monotonic()
            if not chunk:
                break
            buffer += chunk
            while True:
                newline = buffer.find(b"\n", 0, MAX_LINE_BYTES + 1)
                if newline >= 0:
                    line = bytes(buffer[:newline])
                    del buffer[: newline + 1]
                elif len(buffer) > MAX_LINE_BYTES:
                    cut = _utf8_boundary(buffer, MAX_LINE_BYTES)
                    line = bytes(buffer[:cut])
                    del buffer[:cut]
                else:
                    break
                await self._emit(line)
        if buffer:
            await self._emit(bytes(buffer))

    async def _emit(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace")
        if text.endswith("\r"):
            text = text[:-1]
        self._in_sink = True
        try:
            await self._sink(text)
        finally:
            self._in_sink = False
            self._last_read = time.monotonic()

    async def drain(self, task: asyncio.Task[None]) -> None:
        """Wait until the pipe is fully read, or until it has been silent too long (held open elsewhere)."""
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            if task.done():
                break
            if not self._in_sink and time.monotonic() - self._last_read > _DRAIN_IDLE_SECONDS:
                task.cancel()
                break
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _utf8_boundary(buffer: bytearray, limit: int) -> int:
    """Largest cut <= limit (< len(buffer)) not splitting a utf-8 sequence (continuation bytes 10xxxxxx)."""
    cut = limit
    while cut > limit - 4 and cut > 0 and (buffer[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > 0 else limit
