"""Per-deployment scratch directories that do not outlive a killed runner.

A job's scratch directory holds the upstream outputs with their secrets opened, and the step's env
file. A runner removes it when the job ends. A runner that is killed (SIGKILL, OOM, power loss) cannot,
so the directories live under ``<work dir>/scratch`` and each is held with an exclusive ``flock`` while
its job runs. A runner that starts removes every directory there that nobody holds: the kernel drops a
dead process's locks, and a live runner sharing the work dir keeps its own. A directory is locked under
a ``.new-`` name and only then given its real name, so a sweep never takes one that is being set up.

The directory also records the job's step process groups (see ``groups``): a sweep first stops the
groups a dead runner left running there, then removes the directory. A live runner's groups are never
touched, since its directories are held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from stackcascade.runner import groups as process_groups

_NEW = ".new-"


@contextlib.contextmanager
def scratch_dir(root: Path, deployment_id: str) -> Iterator[Path]:
    """A fresh directory (mode 0700) under ``root``, held for the job and removed after it."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f"{_NEW}{deployment_id[:8]}-", dir=root))
    held = os.open(staged, os.O_RDONLY | os.O_DIRECTORY)  # not inherited by the step processes
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        path = staged.with_name(staged.name.removeprefix(_NEW))
        staged.rename(path)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    finally:
        os.close(held)
        if staged.exists():  # the rename failed
            shutil.rmtree(staged, ignore_errors=True)


def sweep(root: Path, *, grace: float = process_groups.GRACE_SECONDS) -> int:
    """Remove the scratch directories under ``root`` that no running job holds; how many were removed.

    The step process groups recorded in them (a runner was killed while they ran) are stopped first, all
    at once (SIGTERM, SIGKILL after ``grace``), with a warning naming each deployment. This blocks for up
    to ``grace`` seconds: call it from a thread in an event loop.
    """
    if not root.is_dir():
        return 0
    held: dict[Path, int] = {}  # the dead directories, locked by us until they are gone
    try:
        for entry in root.iterdir():
            if entry.name.startswith(_NEW):
                continue  # being set up by a runner right now
            try:
                probe = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:  # not a directory, or gone meanwhile
                continue
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(probe)
                continue  # a job of a live runner holds it
            held[entry] = probe
        left = [group for entry in held for group in process_groups.recorded(entry)]
        if left:
            process_groups.stop_groups(left, grace=grace, why="that a killed runner left running")
        for entry in held:
            shutil.rmtree(entry, ignore_errors=True)
    finally:
        for probe in held.values():
            os.close(probe)
    return len(held)
