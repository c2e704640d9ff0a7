"""Scratch directories: removed after their job, and swept after a runner that was killed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stackcascade.runner.scratch import scratch_dir, sweep


def test_a_scratch_dir_is_private_while_its_job_runs_and_gone_after_it(tmp_path: Path) -> None:
    root = tmp_path / "scratch"
    with scratch_dir(root, "0123456789abcdef") as path:
        (path / "upstream-outputs.json").write_text("{}")
        assert path.parent == root
        assert path.name.startswith("01234567-")
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert list(root.iterdir()) == []


def test_a_scratch_dir_is_removed_when_its_job_fails(tmp_path: Path) -> None:
    root = tmp_path / "scratch"
    with pytest.raises(RuntimeError), scratch_dir(root, "feedface") as path:
        (path / "cascade.env").write_text("A=1\n")
        raise RuntimeError("the step failed")
    assert list(root.iterdir()) == []


def test_a_sweep_removes_what_a_killed_runner_left_and_keeps_what_a_live_job_holds(tmp_path: Path) -> None:
    root = tmp_path / "scratch"
    # A runner process that dies (SIGKILL) inside its job: the kernel drops its lock, the directory stays.
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sys; from pathlib import Path; from stackcascade.runner.scratch import scratch_dir\n"
            "with scratch_dir(Path(sys.argv[1]), 'deadbeef') as path:\n"
            '    (path / \'upstream-outputs.json\').write_text(\'{"db": {"password": "s3cret"}}\')\n'
            "    os.kill(os.getpid(), signal.SIGKILL)\n",
            str(root),
        ],
        check=False,
    )
    assert killed.returncode == -9
    left = [entry.name for entry in root.iterdir()]
    assert len(left) == 1 and left[0].startswith("deadbeef-")
    with scratch_dir(root, "cafebabe") as live:
        (live / "cascade.env").write_text("")
        assert sweep(root) == 1
        assert [entry.name for entry in root.iterdir()] == [live.name]  # the live job keeps its directory
        assert (live / "cascade.env").exists()
    assert sweep(root) == 0


def test_a_directory_being_set_up_is_never_swept(tmp_path: Path) -> None:
    root = tmp_path / "scratch"
    staged = root / ".new-12345678-abc"
    staged.mkdir(parents=True)
    assert sweep(root) == 0
    assert staged.exists()


def test_sweeping_a_work_dir_without_scratch_dirs_does_nothing(tmp_path: Path) -> None:
    assert sweep(tmp_path / "scratch") == 0
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "stray-file").write_text("x")
    assert sweep(tmp_path / "scratch") == 0
    assert os.path.exists(tmp_path / "scratch" / "stray-file")
