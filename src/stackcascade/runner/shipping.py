"""Ships masked log lines to the server in small batches, so a line shows up within a second."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from stackcascade.runner.client import RunnerClient
from stackcascade.runner.masking import Masker

FLUSH_SECONDS = 0.25
BATCH_LINES = 500
MAX_LINE_CHARS = 16_384


class LogShipper:
    def __init__(self, client: RunnerClient, deployment_id: str, masker: Masker) -> None:
        self._client = client
        self._deployment_id = deployment_id
        self._masker = masker
        self._pending: list[dict[str, Any]] = []
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

    async def flush(self) -> None:
        """Send what is pending. A batch leaves ``_pending`` only once the server has stored it."""
        async with self._lock:
            while self._pending:
                batch = self._pending[:BATCH_LINES]
                await self._client.logs(self._deployment_id, batch)
                del self._pending[: len(batch)]

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
            self._wake.clear()
            await self.flush()

    async def close(self) -> None:
        """Stop the background flusher without interrupting a batch in flight, then send the rest."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        await self.flush()
