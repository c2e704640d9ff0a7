"""Runs one claimed deployment: source, pre-run commands, the operation, outputs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx2

from stackcascade.runner import environment
from stackcascade.runner.client import ProtocolError, RunnerClient, new_claim_key
from stackcascade.runner.groups import GroupLog, Watchdog
from stackcascade.runner.masking import Masker
from stackcascade.runner.process import run_process
from stackcascade.runner.runtimes import detect, run_operation
from stackcascade.runner.scratch import scratch_dir
from stackcascade.runner.shipping import LogShipper
from stackcascade.runner.types import GitAuth, OperationResult, RunContext, SourceSpec, StepFailed
from stackcascade.runner.workspace import fetch_source

log = logging.getLogger("stackcascade.runner")

STEPS = ("source", "pre-run", "operation", "outputs")
FINISH_OUTPUTS_CHARS = 256 * 1024
_REPORT_GRACE_SECONDS = 5.0  # the finish is sent again until this long after the lease would have ended


def _step(index: int, status: str) -> dict[str, Any]:
    return {"index": index, "name": STEPS[index], "status": status}


# A run starts with its first step running: sent with the claim (protocol 2) or with the start call.
START_STEPS = [_step(0, "running")]


def _source(job: Mapping[str, Any]) -> SourceSpec:
    raw = job["source"]
    auth = raw.get("auth") or {}
    return SourceSpec(
        repo_url=raw["repoUrl"],
        branch=raw.get("branch"),
        commit=raw.get("commit"),
        repo_dir=raw.get("repoDir"),
        auth=GitAuth(
            access_token=auth.get("accessToken"),
            username=auth.get("username"),
            password=auth.get("password"),
            ssh_private_key=auth.get("sshPrivateKey"),
            ssh_passphrase=auth.get("sshPassphrase"),
        )
        if auth
        else None,
    )


def _workspace_key(job: Mapping[str, Any]) -> Path:
    return Path(job["org"]) / job["project"] / job["stack"]


class JobRun:
    """One deployment on this runner. ``stop`` set by the agent means: cancel now (grace period over)."""

    def __init__(
        self,
        client: RunnerClient,
        job: Mapping[str, Any],
        *,
        work_dir: Path,
        base_env: Mapping[str, str],
        api_url: str | None = None,
        grace_seconds: float = 10.0,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.client = client
        self.job = job
        self.id = str(job["deploymentId"])
        # Absolute: steps run inside the workspace, so a relative work dir (the default `.cascade`) would
        # hand them paths like CASCADE_OUTPUTS that do not resolve from there.
        self.work_dir = work_dir.absolute()
        self.base_env = base_env
        self.api_url = api_url or str(job.get("apiUrl") or client.base_url)
        self.cancel = asyncio.Event()
        self.grace_seconds = grace_seconds
        self.watchdog = watchdog  # told of each step's process group, to stop it if this runner dies
        self._stopped_by_runner = False
        self._masker = Masker(list(job.get("secretValues") or []))
        # Protocol 2 (the server says so in the job): steps and the last lines ride along (see shipping).
        self._shipper = LogShipper(client, self.id, self._masker, batched=int(job.get("protocol") or 1) >= 2)
        self._step = 0
        self._lease_until = 0.0  # by this process's clock, when the lease may end: renewed by each heartbeat
        self.report_retry_delay = 1.0  # before the finish call is sent again (doubling, at most 5 s)

    def stop(self) -> None:
        """The runner is shutting down and the grace period is over."""
        self._stopped_by_runner = True
        self.cancel.set()

    async def execute(self, *, claim_next: bool | Callable[[], bool] = False) -> dict[str, Any] | None:
        """Run and report the deployment. ``claim_next`` (asked when the finish is sent: a runner told to
        stop meanwhile takes no new work): a server of protocol 3 or later claims this runner's next
        deployment with the finish call; returns that job (None: none, or not asked)."""
        if not self.job.get("started"):  # a server older than protocol 2 did not start it with the claim
            await self.client.start(self.id, START_STEPS)
        self._shipper.start()
        lease_seconds = float(self.job.get("leaseSeconds") or 60)
        self._lease_until = time.monotonic() + lease_seconds
        heartbeat = asyncio.create_task(self._heartbeats(lease_seconds))
        result: dict[str, Any]
        last: list[dict[str, Any]] = []  # the step transition the finish call carries
        try:
            # Swept if this runner is killed, and the step process groups recorded there stopped first.
            with (
                scratch_dir(self.work_dir / "scratch", self.id) as scratch,
                GroupLog(scratch, self.id, self.watchdog) as groups,
            ):
                outcome = await self._steps(scratch, groups)
            last = [_step(len(STEPS) - 1, "succeeded")]
            result = {"status": "succeeded", **self._result_fields(outcome)}
        except StepFailed as failure:
            reason = failure.reason
            if reason == "cancelled" and self._stopped_by_runner:
                reason = "cancelled: the runner shut down"
            await self._shipper.line(f"error: {reason}")
            with contextlib.suppress(ProtocolError):
                await self._shipper.transition(_step(self._step, "failed"))
            # The reason is shown by the API, cascades and the console, not only in the (masked) log.
            result = {"status": "failed", "reason": self._masker.mask(reason)}
        except Exception as exc:  # a bug or an I/O error of the runner: fail the deployment, keep the runner
            log.exception("deployment %s: runner error", self.id)
            result = {"status": "failed", "reason": f"runner error: {type(exc).__name__}"}
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)  # whatever it met, the result is reported
        # Large outputs already make a large finish request: then the last lines go in a call of their own.
        small = len(json.dumps(result.get("outputs"))) <= FINISH_OUTPUTS_CHARS
        lines, steps = await self._shipper.close(carry_lines=small)
        if steps or last:
            result["steps"] = [*steps, *last]
        if lines:
            result["lines"] = lines
        wants_next = claim_next() if callable(claim_next) else claim_next
        return await self._report(result, next_start=START_STEPS if wants_next and self._protocol >= 3 else None)

    @property
    def _protocol(self) -> int:
        return int(self.job.get("protocol") or 1)

    async def _report(
        self, result: dict[str, Any], *, next_start: list[dict[str, Any]] | None
    ) -> dict[str, Any] | None:
        """The finish call, sent again through an outage (a server restart, the network) for as long as the
        lease may still hold: a deployment that succeeded must not end "runner lost" for a lost answer.
        Every repeat is marked a retry, with the same claim key for the next job, so a finish that did
        arrive is answered as before."""
        claim_key = new_claim_key()
        retried = False
        delay = self.report_retry_delay
        while True:
            try:
                return await self.client.finish(
                    self.id, result, next_start=next_start, claim_key=claim_key, retried=retried
                )
            except (httpx2.TransportError, ProtocolError) as exc:
                if isinstance(exc, ProtocolError) and exc.status < 500:
                    raise  # refused: the lease ended, or the deployment was taken from us
                if time.monotonic() + delay > self._lease_until + _REPORT_GRACE_SECONDS:
                    raise
                log.warning("deployment %s: the finish call failed (%s); sending it again", self.id, exc)
            retried = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    @staticmethod
    def _result_fields(outcome: OperationResult) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if outcome.outputs is not None:
            fields["outputs"] = outcome.outputs
            fields["secretOutputs"] = sorted(outcome.secret_outputs)
        if outcome.resource_changes is not None:
            fields["resourceChanges"] = outcome.resource_changes
        return fields

    async def _heartbeats(self, lease_seconds: float) -> None:
        # The heartbeat is also how a cancel reaches a runner: at most 2 s between them, so a Cancel
        # (from the console, the CLI or the API) takes effect within about 2 s plus the kill grace.
        every = max(0.2, min(lease_seconds / 3, 2.0))
        while True:
            await asyncio.sleep(every)
            try:
                if await self.client.heartbeat(self.id):
                    self.cancel.set()
                self._lease_until = time.monotonic() + lease_seconds
            except ProtocolError as exc:
                if exc.status >= 500:  # the server's trouble (a restart, an overload): keep renewing
                    continue
                self.cancel.set()  # the server no longer considers us the owner: stop working
                return
            except httpx2.TransportError:  # the server or the network is away: keep trying, the lease may hold
                log.warning("deployment %s: heartbeat failed: the server cannot be reached; trying again", self.id)

    async def _enter(self, index: int) -> None:
        """The previous step succeeded and ``index`` runs (the shipper reports it). Step 0 started with the run."""
        if index > 0:
            await self._shipper.transition(_step(index - 1, "succeeded"), _step(index, "running"))
        self._step = self._shipper.step = index

    async def _steps(self, scratch: Path, groups: GroupLog) -> OperationResult:
        files = {
            "upstream": scratch / "upstream-outputs.json",
            "env": scratch / "cascade.env",
            "outputs": scratch / "outputs.json",
        }
        environment.write_upstream_outputs(files["upstream"], self.job.get("upstreamOutputs") or {})
        files["env"].touch(mode=0o600)
        env = environment.build(self.base_env, self.job, api_url=self.api_url, files=files)
        options = self.job.get("options") or {}
        ctx = RunContext(
            env=env,
            shell=str(options.get("shell") or "bash"),
            on_line=self._shipper.line,
            cancel=self.cancel,
            deadline=time.monotonic() + float(options.get("timeoutSeconds") or 7200),
            grace_seconds=self.grace_seconds,
            stack=str(self.job["stack"]),
            groups=groups,
        )
        await self._enter(0)
        project_dir = await fetch_source(
            _source(self.job), workspace=self.work_dir / "workspaces" / _workspace_key(self.job), ctx=ctx
        )

        await self._enter(1)
        commands = list(self.job.get("preRunCommands") or [])
        if not commands:
            await ctx.on_line("no pre-run commands")
        for number, command in enumerate(commands, start=1):
            await ctx.on_line(f"$ {command}")
            finished = await run_process(command, cwd=project_dir, ctx=ctx)
            if finished.stopped:
                raise StepFailed(finished.stopped)
            if finished.exit_code != 0:
                raise StepFailed(f"pre-run command {number} failed (exit {finished.exit_code})")
            ctx.env.update(environment.read_env_file(files["env"]))

        await self._enter(2)
        project = detect(project_dir)
        await ctx.on_line(f"runtime: {project.runtime}")
        outcome = await run_operation(project, str(self.job["operation"]), ctx, outputs_file=files["outputs"])

        await self._enter(3)
        if self.job["operation"] != "update":
            outcome.outputs = None
            await ctx.on_line("outputs are recorded after an update only")
        elif outcome.outputs is not None:
            names = ", ".join(sorted(outcome.outputs)) or "none"
            await ctx.on_line(f"outputs: {names}")
        return outcome
