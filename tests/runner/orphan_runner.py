"""A real runner process for the orphan tests: ``python orphan_runner.py WORK_DIR PROJECT ID [ID...]``.

It runs a ``Runner`` (the same code as ``cascade runner``) whose client hands it the given deployments
(the project's update command writes its pids under ``$PIDS`` and sleeps), then claims nothing more and
never stops on its own: the tests kill it. Once every job runs it writes ``WORK_DIR/ready`` with its
watchdog's pid (0 when it has none).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from stackcascade.runner.agent import Runner


class Client:
    base_url = "http://stackcascade.local"

    def __init__(self, runner_id: str, jobs: list[dict[str, Any]]) -> None:
        self.runner_id = runner_id
        self.jobs = jobs

    async def claim(self, wait_seconds: float, start: Any = None, **_key: Any) -> dict[str, Any] | None:
        if self.jobs:
            return self.jobs.pop(0)
        await asyncio.sleep(wait_seconds)
        return None

    async def start(self, *_args: Any) -> None:
        pass

    async def steps(self, *_args: Any) -> None:
        pass

    async def logs(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    async def heartbeat(self, _deployment_id: str) -> bool:
        return False

    async def finish(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    async def close(self) -> None:
        pass


def job(project: Path, deployment_id: str) -> dict[str, Any]:
    return {
        "deploymentId": deployment_id,
        "org": "acme",
        "project": "net",
        "stack": deployment_id[:8],
        "operation": "update",
        "version": 1,
        "source": {"repoUrl": str(project)},
        "deploymentToken": "csc_deployment_token",
        "leaseSeconds": 60,
        "protocol": 3,
        "started": True,
    }


async def main(work_dir: Path, project: Path, ids: list[str]) -> None:
    jobs = [job(project, deployment_id) for deployment_id in ids]
    runner = Runner(
        lambda runner_id: Client(runner_id, jobs),  # type: ignore[arg-type,return-value]
        work_dir=work_dir,
        concurrency=len(ids),
        base_env={"PATH": os.environ["PATH"], "HOME": str(work_dir), "PIDS": os.environ["PIDS"]},
        poll_seconds=0.2,
    )
    task = asyncio.create_task(runner.run(asyncio.Event()))
    pids = Path(os.environ["PIDS"])
    while not all((pids / f"{deployment_id}.leader").exists() for deployment_id in ids):
        await asyncio.sleep(0.02)
    watchdog = getattr(runner, "_watchdog", None)
    (work_dir / "ready").write_text(str(watchdog.pid if watchdog is not None else 0))
    await task


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]))
