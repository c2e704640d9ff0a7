"""Ships masked log lines (and step transitions) to the server in small batches, so a line shows up
within a second.

With a server that speaks protocol 2 (the job says so), step transitions are not a call of their own:
they carry the runner's time of the transition and ride along with the next flush, and whatever is
still pending when the deployment ends goes with the finish call. A deployment that takes less than a
flush interval is so reported in two calls (start, finish); a longer one shows each step within
``FLUSH_SECONDS``. With an older server every transition is its own call, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from stackcascade.runner.client import RunnerClient
from stackcascade.runner.masking import Masker

log = logging.getLogger("stackcascade.runner")

FLUSH_SECONDS = 0.5  # a line shows within a second; a deployment shorter than this is one call less
BATCH_LINES = 500
MAX_LINE_CHARS = 16_384
MAX_STEPS_PER_CALL = 20  # what the server accepts in one call
# Lines still pending at the end ride along with the finish call only up to this much text (JSON may
# make it several times larger), so the finish request stays well under the server's body limit; more
# is sent in log calls first.
FINISH_LINE_CHARS = 16 * 1024


class LogShipper:
    def __init__(self, client: RunnerClient, deployment_id: str, masker: Masker, *, batched: bool = False) -> None:
        self._client = client
        self._deployment_id = deployment_id
        self._masker = masker
        self.batched = batched
        self._pending: list[dict[str, Any]] = []
        self._steps: list[dict[str, Any]] = []  # transitions not yet sent (protocol 2)
        self._seq: dict[int, int] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.step = 0
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def line(self, text: str) -> None:
        """Record output of the current step (secrets masked before it leaves this process).

        Text with newlines (an echoed multi-line command) becomes one log line per physical line.
        """
        for physical in text.split("\n"):
            masked = self._masker.mask(physical)
            if len(masked) > MAX_LINE_CHARS:
                masked = masked[:MAX_LINE_CHARS] + " [line cut]"
            seq = self._seq.get(self.step, 0)
            self._seq[self.step] = seq + 1
            self._pending.append({"step": self.step, "seq": seq, "line": masked, "timestamp": time.time()})
        if len(self._pending) >= BATCH_LINES:
            self._wake.set()

    async def transition(self, *steps: dict[str, Any]) -> None:
        """Step transitions (``{"index", "name", "status"}``) as of now.

        Protocol 2: stamped with the time and sent with the next flush or with finish. Otherwise sent at once.
        """
        if not self.batched:
            await self._client.steps(self._deployment_id, list(steps))
            return
        at = time.time()
        self._steps.extend({**step, "at": at} for step in steps)

    async def flush(self) -> None:
        """Send what is pending. A batch leaves ``_pending`` only once the server has stored it."""
        async with self._lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        while self._pending or self._steps:
            batch = self._pending[:BATCH_LINES]
            steps = self._steps[:MAX_STEPS_PER_CALL]
            await self._client.logs(self._deployment_id, batch, steps)
            del self._pending[: len(batch)]
            del self._steps[: len(steps)]

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
            self._wake.clear()
            if self._closing:
                break  # close() sends the rest
            try:
                await self.flush()
            except Exception as exc:  # the server away (a restart): the lines stay pending, sent next time
                log.warning("deployment %s: log lines not sent yet: %s", self._deployment_id, type(exc).__name__)

    async def close(self, *, carry_lines: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Stop the background flusher without interrupting a batch in flight, then send the rest.

        Protocol 2: returns the lines and step transitions the finish call should carry (a small
        remainder, leaving room for one more step; no lines unless ``carry_lines``); everything else
        has been sent. Otherwise everything has been sent.
        """
        task = self._task
        if task is not None and not task.done() and not self._lock.locked():
            task.cancel()  # it waits for the next interval, nothing in flight: no need to wake it and wait
        elif task is not None:
            self._closing = True
            self._wake.set()
            with contextlib.suppress(Exception):
                await task
        async with self._lock:
            if (
                not self.batched
                or len(self._steps) >= MAX_STEPS_PER_CALL
                or (self._pending and not carry_lines)
                or not self._fits_finish()
            ):
                try:
                    await self._flush_locked()
                except Exception:
                    if not self.batched:
                        raise
                    # The server cannot take them now: the finish (what matters: the result) still goes,
                    # with the newest lines that fit it and a line saying how many older ones were lost.
                    self._keep_what_fits_the_finish()
            lines, steps = self._pending, self._steps
            self._pending, self._steps = [], []
        return lines, steps

    def _keep_what_fits_the_finish(self) -> None:
        """Keep the newest pending lines that fit the finish call, and a line saying how many were lost."""
        kept: list[dict[str, Any]] = []
        size = 0
        for line in reversed(self._pending[-(BATCH_LINES - 1) :]):
            size += len(line["line"])
            if size > FINISH_LINE_CHARS - 200:
                break
            kept.append(line)
        kept.reverse()
        lost = len(self._pending) - len(kept)
        if lost:
            seq = self._seq.get(self.step, 0)
            self._seq[self.step] = seq + 1
            note = f"[{lost} earlier log line(s) lost: the server could not be reached to store them]"
            kept.append({"step": self.step, "seq": seq, "line": note, "timestamp": time.time()})
        self._pending = kept
        self._steps = self._steps[-(MAX_STEPS_PER_CALL - 1) :]

    def _fits_finish(self) -> bool:
        if len(self._pending) > BATCH_LINES:
            return False
        return sum(len(line["line"]) for line in self._pending) <= FINISH_LINE_CHARS
