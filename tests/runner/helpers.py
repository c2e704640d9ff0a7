"""Building blocks for runner tests: a recording line sink and RunContext construction."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from stackcascade.runner.types import LineSink, RunContext

FAKES = Path(__file__).parent / "fakes"


class Log:
    """An async line sink that keeps every line; ``hook`` (if set) also sees each line."""

    def __init__(self, hook: Callable[[str], None] | None = None) -> None:
        self.lines: list[str] = []
        self.hook = hook

    async def __call__(self, line: str) -> None:
        self.lines.append(line)
        if self.hook is not None:
            self.hook(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def python_bin(directory: Path) -> Path:
    """A directory holding only ``python3`` (the real interpreter), so `#!/usr/bin/env python3` fakes start
    quickly and a PATH can be built that lacks everything else."""
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "python3"
    if not link.exists():
        link.symlink_to(os.path.realpath(sys.executable))
    return directory


def make_context(
    env: dict[str, str],
    *,
    log: LineSink | None = None,
    shell: str = "bash",
    timeout: float = 60.0,
    grace: float = 5.0,
    stack: str = "",
    cancel: asyncio.Event | None = None,
) -> RunContext:
    return RunContext(
        env=env,
        shell=shell,
        on_line=log if log is not None else Log(),
        cancel=cancel if cancel is not None else asyncio.Event(),
        deadline=time.monotonic() + timeout,
        grace_seconds=grace,
        stack=stack,
    )


async def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; returns whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


def pid_gone(pid: int, name: str) -> bool:
    """True when process ``pid`` named ``name`` no longer runs (absent, reused by another program, or a
    zombie waiting for a reaper this test does not control)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    return comm != name or stat.rpartition(")")[2].split()[0] in ("Z", "X")
