"""Run one step process: stream its output line by line, stop it on cancel or timeout, leave no orphans.

Every process gets its own session (so its own process group): cancelling or timing out signals the
whole group (SIGTERM, then SIGKILL after the grace period), and when the main process has exited,
whatever it left running in its group (``sleep 100 &``) is killed so nothing outlives the step.

Processes are started with ``subprocess.Popen`` (vfork + exec: well under a millisecond even from a
large server process) rather than the event loop's own spawn, which under uvloop forks the whole
process and costs 10-20 ms when the server holds 100 MB. The output pipe is then read by the event
loop, and the exit is noticed through a pidfd the loop watches (Linux 5.3+), so a short command is
seen to end at once; elsewhere the exit is polled (1 ms, doubling up to 50 ms).

So that a runner killed with SIGKILL leaves no step running on (see ``groups``), each group is recorded
(``ctx.groups``) as soon as it starts and forgotten only once it is killed and its leader reaped, and the
group is killed before its leader is reaped: until then the leader's zombie keeps the group id from being
reused, so a record never names a stranger's group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
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
# Without a pidfd the exit is polled: from 1 ms, doubling up to 50 ms, so a short command is noticed
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
    (negative signal number when a signal ended the process) and ``stopped`` = "cancelled" / "timed
    out" when we stopped it. A program that cannot be started yields exit code 127 (not found) or 126
    (not executable) and one explanatory line, as a shell would.
    """
    args = list(argv) if argv is not None else [ctx.shell or "bash", "-c", command]
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    try:
        try:
            # vfork + exec blocks for well under a millisecond (see the module doc); S603: the commands are the point.
            proc = subprocess.Popen(  # noqa: ASYNC220, S603
                args,
                cwd=cwd,
                env=ctx.env,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
    except OSError as exc:
        os.close(read_fd)
        what = exc.filename if exc.filename is not None else args[0]
        await ctx.on_line(f"cannot start {args[0]}: {exc.strerror or exc} ({what})")
        return ProcessResult(exit_code=127 if isinstance(exc, FileNotFoundError) else 126)

    # Before anything else (and before any await): a runner killed from here on leaves a record behind.
    group = ctx.groups.started(proc.pid) if ctx.groups is not None else None
    exit_watch = _ExitWatch(proc, loop)
    transport: asyncio.ReadTransport | None = None
    pump_task: asyncio.Task[None] | None = None
    try:
        reader = asyncio.StreamReader(limit=_READ_CHUNK)
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        read_fd = -1
        try:
            transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        except BaseException:
            pipe.close()
            raise
        pump = _Pump(reader, ctx.on_line)
        pump_task = asyncio.create_task(pump.run())
        stopped = await _supervise(proc, exit_watch, ctx, pump_task)
        await pump.drain(pump_task)
    finally:
        # Also reached with an exception (the sink failed, our caller was cancelled): never leave the
        # group running, and release the pipe even if something outside the group still holds it.
        if read_fd >= 0:
            os.close(read_fd)
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGKILL)
            await exit_watch.wait(5.0)  # SIGKILL cannot be ignored: this is brief
        exit_watch.close()
        if pump_task is not None and not pump_task.done():
            pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump_task
        if transport is not None and not transport.is_closing():
            transport.close()
        if group is not None and ctx.groups is not None and proc.returncode is not None:
            ctx.groups.ended(group)  # killed and reaped: nothing of it is left to stop
    assert proc.returncode is not None
    return ProcessResult(exit_code=proc.returncode, stopped=stopped)


class _ExitWatch:
    """Resolves ``exited`` once the process has exited and been reaped (``proc.returncode`` is set)."""

    def __init__(self, proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._proc = proc
        self._loop = loop
        self.exited: asyncio.Future[None] = loop.create_future()
        self._pidfd: int | None = None
        self._poller: asyncio.Task[None] | None = None
        try:
            self._pidfd = os.pidfd_open(proc.pid)
            loop.add_reader(self._pidfd, self._check)
        except (AttributeError, OSError, NotImplementedError, ValueError):
            # No pidfd_open (not Linux, or a kernel before 5.3: AttributeError/OSError), or a loop that
            # cannot watch file descriptors (NotImplementedError, ValueError): poll for the exit instead.
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
            self._poller = loop.create_task(self._poll())
        self._check()  # it may be gone already

    def _check(self) -> None:
        if self._proc.returncode is None and _exited_unreaped(self._proc.pid):
            # Kill what the leader left in its group while its zombie still holds the group id (see the
            # module doc); the leftovers were to be killed after its exit in any case.
            _signal_group(self._proc.pid, signal.SIGKILL)
        if self._proc.poll() is not None:
            self._stop_watching()
            if not self.exited.done():
                self.exited.set_result(None)

    async def _poll(self) -> None:
        poll = _POLL_FIRST_SECONDS
        while not self.exited.done():
            await asyncio.sleep(poll)
            poll = min(poll * 2, _POLL_SECONDS)
            self._check()

    async def wait(self, within: float | None) -> bool:
        """Whether the process has exited (and been reaped) within ``within`` seconds (None: no limit)."""
        if not self.exited.done():
            await asyncio.wait({self.exited}, timeout=within)
        return self.exited.done()

    def _stop_watching(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._poller is not None and self._poller is not asyncio.current_task(self._loop):
            self._poller.cancel()
            self._poller = None

    def close(self) -> None:
        self._stop_watching()
        if not self.exited.done():
            self.exited.cancel()


async def _supervise(
    proc: subprocess.Popen[bytes], exit_watch: _ExitWatch, ctx: RunContext, pump: asyncio.Task[None]
) -> str | None:
    """Wait for the main process, stopping it on cancel or deadline; then kill what is left of its group.

    The exit is noticed on its own (pidfd), not by the end of the output: a background child may keep
    the pipe open indefinitely. If the line sink raised, the group is killed at once and the sink's
    exception propagates (nobody would read the pipe any more, so the process could block until the
    deadline).
    """
    cancelled = asyncio.create_task(ctx.cancel.wait())
    stopped: str | None = None
    try:
        while not exit_watch.exited.done():
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
            waiting: set[asyncio.Future[Any]] = {cancelled, exit_watch.exited}
            if not pump.done():
                waiting.add(pump)
            await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
    finally:
        cancelled.cancel()
    if stopped is not None and proc.returncode is None:
        _signal_group(proc.pid, signal.SIGTERM)
        await exit_watch.wait(max(ctx.grace_seconds, 0.0))
    # SIGKILL the group: the main process if it outlived SIGTERM. Leftovers (background children) of a
    # leader that exited were killed by the exit watch before it reaped the leader; once it is reaped the
    # group id may in time name another group, so it is signalled no more.
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGKILL)
    await exit_watch.wait(None)
    return stopped


def _exited_unreaped(pid: int) -> bool:
    """Whether our child ``pid`` has exited, without reaping it (where waitid exists)."""
    if not hasattr(os, "waitid"):
        return False
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped already
        return False


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
