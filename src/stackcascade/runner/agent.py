"""A runner: N slots that claim deployments and run them, and a graceful way to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stackcascade.runner.client import ProtocolError, RunnerClient, new_claim_key
from stackcascade.runner.groups import Watchdog
from stackcascade.runner.job import START_STEPS, JobRun
from stackcascade.runner.scratch import sweep

log = logging.getLogger("stackcascade.runner")

ClientFactory = Callable[[str], RunnerClient]


def default_runner_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Runner:
    def __init__(
        self,
        make_client: ClientFactory,
        *,
        work_dir: Path,
        concurrency: int = 1,
        name: str | None = None,
        base_env: Mapping[str, str] | None = None,
        api_url: str | None = None,
        poll_seconds: float = 10.0,
        grace_seconds: float = 30.0,
        watchdog: bool = True,
    ) -> None:
        self.name = name or default_runner_name()
        self._make_client = make_client
        self._work_dir = work_dir.absolute()  # the process may change directory later; its jobs must not care
        self._concurrency = concurrency
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._api_url = api_url
        self._poll_seconds = poll_seconds
        self._grace_seconds = grace_seconds
        self._use_watchdog = watchdog
        self._watchdog: Watchdog | None = None
        self._running: set[JobRun] = set()
        self.completed = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run until ``stop`` is set; then let running deployments finish, up to the grace period."""
        self._work_dir.mkdir(parents=True, exist_ok=True)
        # Before claiming anything: a killed runner's steps still running (each named in a warning) are
        # stopped, which can take the kill grace; in a thread, so the local pool's server serves meanwhile.
        if swept := await asyncio.to_thread(sweep, self._work_dir / "scratch"):
            log.warning("runner %s: removed %d scratch dir(s) a killed runner left behind", self.name, swept)
        self._watchdog = Watchdog.start() if self._use_watchdog else None
        try:
            await self._serve(stop)
        finally:
            if self._watchdog is not None:
                await self._watchdog.aclose()
                self._watchdog = None

    async def _serve(self, stop: asyncio.Event) -> None:
        slots = [asyncio.create_task(self._slot(index, stop)) for index in range(self._concurrency)]
        await stop.wait()
        _, pending = await asyncio.wait(slots, timeout=self._grace_seconds)
        if pending:
            for job in list(self._running):
                job.stop()
            await asyncio.wait(pending, timeout=self._grace_seconds + 15)
        for task in slots:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _slot(self, index: int, stop: asyncio.Event) -> None:
        client = self._make_client(f"{self.name}/{index}")
        backoff = 0.5
        job: dict[str, Any] | None = None  # the next job, when the server handed it over with a finish
        unanswered: str | None = None  # the key of a claim whose every attempt failed: it may have leased a job
        try:
            while job is not None or not stop.is_set():  # a job handed over is leased to us: run it
                if job is None:
                    key = unanswered or new_claim_key()
                    try:
                        job = await client.claim(
                            self._poll_seconds, START_STEPS, key=key, retried=unanswered is not None
                        )
                    except (ProtocolError, OSError, Exception) as exc:  # keep the slot alive through server restarts
                        # A refusal says why (an invalid token, say); anything else is named by its kind.
                        why = str(exc) if isinstance(exc, ProtocolError) else type(exc).__name__
                        log.warning("runner %s: claim failed: %s", client.runner_id, why)
                        unanswered = None if isinstance(exc, ProtocolError) else key
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), backoff)
                        backoff = min(backoff * 2, 15.0)
                        continue
                    backoff = 0.5
                    unanswered = None
                    if job is None:
                        continue
                job = await self._run_job(client, job, claim_next=lambda: not stop.is_set())
        finally:
            await client.close()

    async def _run_job(
        self, client: RunnerClient, job: dict[str, Any], *, claim_next: Callable[[], bool]
    ) -> dict[str, Any] | None:
        """Run one job; the next one when the finish call brought it."""
        run = JobRun(
            client,
            job,
            work_dir=self._work_dir,
            base_env=self._base_env,
            api_url=self._api_url,
            grace_seconds=10.0,
            watchdog=self._watchdog,
        )
        self._running.add(run)
        try:
            return await run.execute(claim_next=claim_next)
        except Exception as exc:  # the server will fail it when the lease expires
            log.warning(
                "runner %s: deployment %s could not be reported: %s",
                client.runner_id,
                run.id,
                type(exc).__name__,
            )
            return None
        finally:
            self._running.discard(run)
            self.completed += 1
