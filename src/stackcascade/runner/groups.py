"""Step process groups that do not outlive a runner killed with SIGKILL (or by the OOM killer, or a crash).

A runner stops its steps itself when it is told to (cancel, timeout, SIGTERM). A runner that dies at once
cannot: its step process groups (an ``pulumi up``, a ``tofu apply``) would run on, and the server, seeing
the lease expire, may run the stack again while they do. Two safeguards, both Linux-only (elsewhere
nothing is recorded and nothing is signalled):

- **The record.** Each step's process group id is written, with its leader's start time
  (``/proc/PID/stat`` field 22, clock ticks since boot) and the deployment id, into the deployment's
  scratch directory, and removed once the group was stopped. A runner starting on the work dir sweeps
  the scratch directories no live runner holds (see ``scratch``) and first stops every group recorded
  there whose leader still runs with the recorded start time: SIGTERM to the group, SIGKILL after a
  short grace. A leader id that now belongs to another process (ids are reused; ``pid_max`` may be
  32768) has another start time and is left alone.
- **The watchdog.** A runner starts one small helper process (this module run as a script, stdlib only)
  and tells it, through a pipe, each group it starts and ends. Only the runner holds the pipe's write
  end (close-on-exec, never inherited by steps), so when the runner dies the helper reads EOF and stops
  the groups still registered, at once, even if no runner is ever started on that work dir again. It runs
  in a session of its own and ignores SIGINT, SIGTERM and SIGHUP: it lives exactly as long as the pipe.
  The per-step cost is one write to the pipe; the helper starts once per runner.

A group's id stays reserved while any member or its unreaped leader exists, and the runner kills the
group before it reaps the leader (``process``), so a record names either our group or a leader with
another start time. What neither can stop: a process that left the group (``setsid``) or a group whose
leader had exited (and was reaped by init after the runner died) in the instant before the runner killed
it; such a leaderless group is reported, not signalled.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("stackcascade.runner")

JOURNAL = "process-groups"  # in the scratch dir: "+ PGID START DEPLOYMENT" and "- PGID" lines
_PENDING_LIMIT = 1 << 20  # bytes the watchdog may fall behind before it is given up as hung
GRACE_SECONDS = 10.0  # SIGTERM lets `pulumi up` cancel cleanly and save its state; SIGKILL after this
_POLL_SECONDS = 0.05
SUPPORTED = sys.platform.startswith("linux") and os.path.exists("/proc/self/stat")


@dataclass(frozen=True, slots=True)
class Group:
    """A step's process group: its id (= its leader's pid), the leader's start time, the deployment."""

    pgid: int
    start: int
    deployment: str

    def started_line(self) -> bytes:
        return f"+ {self.pgid} {self.start} {self.deployment}\n".encode()

    def ended_line(self) -> bytes:
        return f"- {self.pgid} {self.start}\n".encode()


def replay(lines: Iterable[bytes]) -> dict[int, Group]:
    """The groups started and not ended, by a journal (or the watchdog's pipe). A line cut short (the
    runner died writing it; it has no newline) is skipped: a group without its "+" line had just started.
    An end forgets a group only with its start time: a "-" line sent late, after the id was reused by a
    group started since, does not forget the newer one."""
    live: dict[int, Group] = {}
    for raw in lines:
        if not raw.endswith(b"\n"):
            continue
        parts = raw.split()
        if len(parts) == 4 and parts[0] == b"+" and parts[1].isdigit() and parts[2].isdigit():
            live[int(parts[1])] = Group(int(parts[1]), int(parts[2]), parts[3].decode(errors="replace"))
        elif len(parts) == 3 and parts[0] == b"-" and parts[1].isdigit() and parts[2].isdigit():
            known = live.get(int(parts[1]))
            if known is not None and known.start == int(parts[2]):
                del live[known.pgid]
    return live


@dataclass(frozen=True, slots=True)
class ProcStat:
    name: str  # the command name (comm), e.g. "pulumi"
    state: str  # "R", "S", ... "Z" for a zombie
    start: int  # field 22: the start time in clock ticks after boot


def proc_stat(pid: int) -> ProcStat | None:
    """What /proc says about ``pid``; None when there is no such process (or no /proc)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)  # os-level: a third of the cost of open()
    except OSError:
        return None
    try:
        raw = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # The name is in parentheses and may itself hold spaces and ')': the fields follow the last ')'.
    close = raw.rfind(b")")
    fields = raw[close + 2 :].split()
    try:
        return ProcStat(raw[raw.find(b"(") + 1 : close].decode(errors="replace"), fields[0].decode(), int(fields[19]))
    except (IndexError, ValueError):
        return None


def leader_start(pid: int) -> int | None:
    stat = proc_stat(pid)
    return None if stat is None else stat.start


class Watchdog:
    """The runner's side of the helper that stops its registered groups when the runner dies."""

    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int) -> None:
        self._proc = proc
        self._fd: int | None = write_fd
        self._pending = b""

    @classmethod
    def start(cls) -> Watchdog | None:
        """Start the helper (None where unsupported or when it cannot be started: the sweep still covers)."""
        if not SUPPORTED:
            return None
        read_fd, write_fd = os.pipe()  # both close-on-exec: the helper gets the read end as stdin only
        try:
            # -I -S: no site packages, no user environment; stdlib only. It is ready in about 40 ms, while the
            # runner goes on at once (it only writes to the pipe, which holds what is sent meanwhile).
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and file
                [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid())],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            os.close(write_fd)
            log.warning("could not start the step watchdog (%s); a killed runner's steps stop at its next start", exc)
            return None
        finally:
            os.close(read_fd)
        os.set_blocking(write_fd, False)  # never hold up the event loop, even if the helper hangs
        return cls(proc, write_fd)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def started(self, group: Group) -> None:
        self._send(group.started_line())

    def ended(self, group: Group) -> None:
        self._send(group.ended_line())

    def _send(self, message: bytes) -> None:
        if self._fd is None:
            return
        self._pending += message
        try:
            while self._pending:
                self._pending = self._pending[os.write(self._fd, self._pending) :]
        except BlockingIOError:  # the pipe is full for now: the rest goes with the next message
            if len(self._pending) <= _PENDING_LIMIT:
                return
            self._give_up("it does not read what it is sent")
        except OSError as exc:  # it died (EPIPE)
            self._give_up(str(exc))

    def _flush(self, within: float) -> None:
        """Send what the full pipe held back (the last "ended" lines), so the helper stops nothing of ours."""
        assert self._fd is not None
        deadline = time.monotonic() + within
        with contextlib.suppress(OSError):
            while self._pending and time.monotonic() < deadline:
                try:
                    self._pending = self._pending[os.write(self._fd, self._pending) :]
                except BlockingIOError:
                    time.sleep(0.001)

    def _give_up(self, why: str) -> None:
        log.warning("the step watchdog is gone (%s); a killed runner's steps are stopped at its next start", why)
        # Kill it before closing the pipe: a helper that is only stalled would read the EOF as this runner's
        # death and stop the steps it still runs. It is our unreaped child: its pid is ours to signal.
        with contextlib.suppress(OSError):
            self._proc.kill()
        self.close()

    def close(self) -> None:
        """Close the pipe: the helper exits on EOF (having stopped any group still registered)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def aclose(self, within: float = 2.0) -> None:
        """Close the pipe and reap the helper (it exits at once when no group is left registered)."""
        import asyncio  # here: the helper runs this file too and has no use for asyncio (48 ms, 10 MB)

        try:
            if self._fd is not None and self._pending:
                await asyncio.to_thread(self._flush, within)
        finally:
            self.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self._proc.wait, within)


class GroupLog:
    """One deployment's groups: journaled in its scratch directory and registered with the watchdog.

    The journal is one file opened once per job and appended to (a write per start and end of a step
    process); close it when the job ends."""

    def __init__(self, directory: Path, deployment: str, watchdog: Watchdog | None = None) -> None:
        self.path = directory / JOURNAL
        self.deployment = "".join(deployment.split()) or "-"  # one word in the journal's lines
        self.watchdog = watchdog
        self._fd: int | None = None

    def __enter__(self) -> GroupLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def started(self, pid: int) -> Group | None:
        """The step process ``pid`` leads a new group (start_new_session): record it before anything else."""
        start = leader_start(pid) if SUPPORTED else None
        if start is None:
            return None  # not Linux, or gone already (nothing to stop)
        group = Group(pid, start, self.deployment)
        self._write(group.started_line())
        if self.watchdog is not None:
            self.watchdog.started(group)
        return group

    def ended(self, group: Group) -> None:
        """The group was killed and its leader reaped: nothing of it is left to stop."""
        self._write(group.ended_line())
        if self.watchdog is not None:
            self.watchdog.ended(group)

    def _write(self, line: bytes) -> None:
        try:
            if self._fd is None:  # close-on-exec, as every descriptor Python opens: no step inherits it
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.write(self._fd, line)
        except OSError as exc:  # a full disk, say: the watchdog still knows the group
            log.warning("deployment %s: could not record a process group: %s", self.deployment, exc)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def recorded(directory: Path) -> list[Group]:
    """The groups a scratch directory's journal names as started and not ended."""
    try:
        with open(directory / JOURNAL, "rb") as journal:
            return list(replay(journal).values())
    except OSError:
        return []


def _killpg(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except OSError as exc:
        if exc.errno not in (errno.ESRCH, errno.EPERM):
            raise
        return False
    return True


def _running(group: Group) -> bool:
    """The leader still runs with the recorded start time (not exited, not another process)."""
    stat = proc_stat(group.pgid)
    return stat is not None and stat.start == group.start and stat.state not in ("Z", "X")


def stop_groups(groups: list[Group], *, grace: float = GRACE_SECONDS, why: str) -> list[Group]:
    """Stop the groups whose leader still has the recorded start time (SIGTERM, then SIGKILL after
    ``grace``); a warning per group names its deployment. Returns the groups that were signalled."""
    if not SUPPORTED:
        return []
    ours: list[Group] = []
    for group in groups:
        stat = proc_stat(group.pgid)
        if stat is not None and stat.start == group.start:
            # Alive, or a zombie still holding the id (and perhaps members): either way the group is ours.
            log.warning(
                "deployment %s: stopping process group %d (%s) %s", group.deployment, group.pgid, stat.name, why
            )
            if stat.state in ("Z", "X") or not _killpg(group.pgid, signal.SIGTERM):
                _killpg(group.pgid, signal.SIGKILL)
                continue
            ours.append(group)
        elif stat is None and _killpg(group.pgid, 0):
            # Its leader exited and was reaped by init (the runner died in that instant): what remains
            # cannot be told from a group a reused id may lead since, so it is named, not signalled.
            log.warning(
                "deployment %s: process group %d %s has no leader any more; not signalled, check it by hand",
                group.deployment,
                group.pgid,
                why,
            )
    deadline = time.monotonic() + grace
    waiting = list(ours)
    while waiting and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        waiting = [group for group in waiting if _running(group)]
    for group in ours:
        # Its leader ran moments ago (or is a zombie init reaps now): SIGKILL whatever is left of the group,
        # unless its id already names a process started since.
        stat = proc_stat(group.pgid)
        if stat is None or stat.start == group.start:
            _killpg(group.pgid, signal.SIGKILL)
    return ours


def _watch(runner_pid: int) -> None:
    """The helper: register and forget groups as the runner says; on EOF stop the ones still registered."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    logging.basicConfig(format="%(levelname)s stackcascade.runner watchdog: %(message)s", level=logging.INFO)
    live = replay(sys.stdin.buffer)  # ends at EOF: the runner closed the pipe, or died
    if live:
        stop_groups(
            list(live.values()),
            why=f"that runner process {runner_pid} left running (it was killed, or could not stop it)",
        )


if __name__ == "__main__":
    _watch(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 0)
