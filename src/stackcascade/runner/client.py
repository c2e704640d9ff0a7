"""The runner's HTTP client for the runner protocol; retries what is safe to retry."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx2

from stackcascade import __version__

RETRYABLE_STATUS = {502, 503, 504}


def new_claim_key() -> str:
    """A claim's own key: the lease it takes is found by it again when the answer is lost."""
    return uuid.uuid4().hex


class ProtocolError(Exception):
    """The server refused a runner call (4xx): retrying will not help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} ({status})")
        self.status = status
        self.message = message


class RunnerClient:
    """One runner's connection to the server. ``transport`` lets the local pool talk in-process."""

    def __init__(
        self,
        base_url: str,
        token: str,
        runner_id: str,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        attempts: int = 6,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.runner_id = runner_id
        self._attempts = attempts
        self._http = httpx2.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"token {token}", "User-Agent": f"stackcascade-runner/{__version__}"},
            transport=transport,
            timeout=httpx2.Timeout(60.0, connect=10.0),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: dict[str, Any], *, retried: bool = False) -> httpx2.Response:
        """POST with retries on connection errors and 502-504; every runner call is idempotent.

        A retry says so (``"retry": true``): a claim, or a finish, whose answer was lost then gets the
        same answer again (the job its ``claimKey`` leased; the finish as done)."""
        payload = {"runnerId": self.runner_id, **body}
        delay = 0.2
        for attempt in range(1, self._attempts + 1):
            if retried or attempt > 1:
                payload["retry"] = True
            try:
                response = await self._http.post(path, json=payload)
            except httpx2.TransportError:
                if attempt == self._attempts:
                    raise
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRYABLE_STATUS or attempt == self._attempts:
                    try:
                        message = str(response.json().get("message", response.text))
                    except ValueError:
                        message = response.text
                    raise ProtocolError(response.status_code, message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")  # pragma: no cover

    async def claim(
        self,
        wait_seconds: float,
        start: list[dict[str, Any]] | None = None,
        *,
        key: str | None = None,
        retried: bool = False,
    ) -> dict[str, Any] | None:
        """The next job, or None when the wait ran out. ``start``: the first step transitions, to start
        the deployment in the same call; a server that did so says ``"started": true`` in the job.

        ``key``: the claim's key (a new one by default); ``retried``: it is the key of an earlier claim
        whose every attempt failed, which may have leased a job: the server hands that job again."""
        body: dict[str, Any] = {"waitSeconds": wait_seconds, "claimKey": key or new_claim_key()}
        if start is not None:
            body["start"] = start
        response = await self._post("/api/runner/claim", body, retried=retried)
        return None if response.status_code == 204 else dict(response.json())

    async def start(self, deployment_id: str, steps: list[dict[str, Any]] | None = None) -> None:
        await self._post(f"/api/runner/deployments/{deployment_id}/start", {"steps": steps or []})

    async def heartbeat(self, deployment_id: str) -> bool:
        """Renew the lease; True when the deployment was cancelled."""
        response = await self._post(f"/api/runner/deployments/{deployment_id}/heartbeat", {})
        return bool(response.json().get("cancelRequested"))

    async def steps(self, deployment_id: str, steps: list[dict[str, Any]]) -> None:
        """Several step transitions in one call (and one transaction)."""
        await self._post(f"/api/runner/deployments/{deployment_id}/steps", {"steps": steps})

    async def logs(
        self, deployment_id: str, lines: list[dict[str, Any]], steps: list[dict[str, Any]] | None = None
    ) -> None:
        """Log lines, and (protocol 2) step transitions stored in the same transaction."""
        body: dict[str, Any] = {"lines": lines}
        if steps:
            body["steps"] = steps
        await self._post(f"/api/runner/deployments/{deployment_id}/logs", body)

    async def finish(
        self,
        deployment_id: str,
        result: dict[str, Any],
        next_start: list[dict[str, Any]] | None = None,
        *,
        claim_key: str | None = None,
        retried: bool = False,
    ) -> dict[str, Any] | None:
        """Report the result. With ``next_start`` (protocol 3) the server also claims (and starts, with
        these first steps) this runner's next deployment: its job, or None when nothing was eligible.

        ``retried``: a finish sent again after every attempt of an earlier one failed, with that one's
        ``claim_key``: if it did arrive, the server answers as it did then (the next job included)."""
        next_claim = {"start": next_start, "claimKey": claim_key or new_claim_key()}
        body = result if next_start is None else {**result, "next": next_claim}
        response = await self._post(f"/api/runner/deployments/{deployment_id}/finish", body, retried=retried)
        if next_start is None:
            return None
        job = response.json().get("next")
        return dict(job) if isinstance(job, dict) else None
