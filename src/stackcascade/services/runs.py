"""The runner protocol's server side: hand out jobs, record steps, logs and results.

A job carries the deployment's effective settings with secrets opened: this is the one place where
they leave the database decrypted, and only towards a runner token over the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from stackcascade.domain import settings as doc
from stackcascade.domain.deployments import TERMINAL, Status
from stackcascade.domain.errors import Forbidden, InvalidInput, NotFound
from stackcascade.domain.roles import Principal, Role, TokenKind
from stackcascade.domain.timestamps import rfc3339
from stackcascade.services import queue
from stackcascade.services.context import ClaimGate, Context
from stackcascade.services.stacks import load, ref
from stackcascade.services.tokens import hash_token, new_token_value
from stackcascade.store import cascades as cascade_rows
from stackcascade.store import deployments as rows
from stackcascade.store import pipelined, runs
from stackcascade.store import webhooks as webhook_rows
from stackcascade.store.schema import tokens

log = logging.getLogger("stackcascade.services")
DEFAULT_TIMEOUT_SECONDS = 2 * 3600
# What the server understands, told to the runner with each job. 2: a claim may start the deployment
# too ("start": its first step transitions), step transitions may carry the runner's time ("at") and
# ride along with a log append, and finish may carry the last log lines; so a short deployment takes
# two calls (claim, finish) instead of one per step, flush and state change. 3: a finish may claim the
# runner's next deployment too ("next"), so a busy runner makes one call per deployment.
PROTOCOL = 3
MAX_STEPS = 20
MASK = "[secret]"
_INSERT_TOKEN = tokens.insert()  # built once: the columns come with the parameters


def _open(ctx: Context, value: Any) -> str | None:
    if isinstance(value, dict) and "ciphertext" in value:
        return ctx.secrets.open(str(value["ciphertext"]))
    return value if isinstance(value, str) else None


def _upstream(ctx: Context, upstream: list[Any], secrets: list[str]) -> dict[str, Any]:
    """``CASCADE_UPSTREAM_OUTPUTS``: each direct upstream's outputs, secrets opened (and later masked)."""
    found: dict[str, Any] = {}
    for row in upstream:
        stored = row.outputs
        found[f"{row.project}/{row.name}"] = open_outputs(ctx, stored, show_secrets=True)
        for sealed in (stored or {}).get("sealed", {}).values():
            value = json.loads(ctx.secrets.open(sealed))
            secrets.append(value if isinstance(value, str) else _json(value))
    return found


def _job(ctx: Context, row: Any, deployment_token: str, upstream: list[Any]) -> dict[str, Any]:
    settings = row.settings
    secrets: list[str] = []
    upstream_outputs = _upstream(ctx, upstream, secrets)

    def opened(value: Any) -> str | None:
        plain = _open(ctx, value)
        if plain is not None and isinstance(value, dict):
            secrets.append(plain)
        return plain

    git = doc.git_source(settings)
    auth_doc = git.get("gitAuth") or {}
    basic = auth_doc.get("basicAuth") or {}
    ssh = auth_doc.get("sshAuth") or {}
    auth = {
        "accessToken": opened(auth_doc.get("accessToken")),
        "username": opened(basic.get("userName")),
        "password": opened(basic.get("password")),
        "sshPrivateKey": opened(ssh.get("sshPrivateKey")),
        "sshPassphrase": opened(ssh.get("password")),
    }
    context = settings.get("operationContext") or {}
    environment = {name: opened(value) or "" for name, value in (context.get("environmentVariables") or {}).items()}
    options = context.get("options") or {}
    return {
        "deploymentId": row.id,
        "org": row.org,
        "project": row.project,
        "stack": row.stack,
        "operation": row.operation,
        "version": int(row.version),
        "cascadeId": row.cascade_id,
        "source": {
            "repoUrl": git.get("repoUrl"),
            "branch": git.get("branch"),
            "commit": git.get("commit"),
            "repoDir": git.get("repoDir"),
            "auth": {k: v for k, v in auth.items() if v is not None},
        },
        "preRunCommands": list(context.get("preRunCommands") or []),
        "environment": environment,
        "secretValues": sorted(set(secrets), key=len, reverse=True),
        "options": {
            "shell": options.get("shell") or "bash",
            "timeoutSeconds": int(options.get("timeout") or DEFAULT_TIMEOUT_SECONDS),
            "skipInstallDependencies": bool(options.get("skipInstallDependencies")),
        },
        "deploymentToken": deployment_token,
        "apiUrl": ctx.public_url,
        "upstreamOutputs": upstream_outputs,
        "leaseSeconds": ctx.lease_seconds,
        "protocol": PROTOCOL,
    }


async def claim(
    ctx: Context,
    principal: Principal,
    runner_id: str,
    wait_seconds: float,
    start: list[runs.StepUpdate] | None = None,
    *,
    key: str | None = None,
    retried: bool = False,
) -> dict[str, Any] | None:
    """Long-poll for the head-of-line deployment; return the job, or None when the wait ran out or the
    server began to shut down (``Context.stop_waiting``).

    With ``start`` (protocol 2) the deployment is also started, with these first step transitions, in
    the same transaction: the job says ``"started": true`` and the runner makes no start call.

    ``key``: the claim's own key, kept with the lease it takes. A ``retried`` claim (the runner sent it
    again: the answer was lost on the way) first gets back the deployment its key already leased, and
    takes the place of an earlier attempt still waiting here (a proxy gave up on that long poll).
    """
    principal.require_runner()
    owner = f"{principal.name}/{runner_id}"
    if start is not None:
        check_steps(start)
    if retried and key is not None:
        _withdraw(ctx, owner, key)
        if (job := await _redeliver(ctx, owner, key)) is not None:
            return job
    deadline = time.monotonic() + wait_seconds
    with _waiting(ctx, owner, start, key) as request:  # for the whole long poll: any turn may claim for it
        notified = False
        while True:
            job = await _claim_in_turn(ctx, request, notified=notified)
            if job is None and request.answer.done():  # a job leased to this claimer is never dropped
                return request.answer.result()  # (None: withdrawn for a retry)
            if job is not None:
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0 or ctx.work.closed:
                return None
            log.debug("%s waits for work (%.1f s left)", owner, remaining)
            notified = await _wait(ctx, request, min(remaining, ctx.claims.poll_seconds))


@contextlib.contextmanager
def _waiting(ctx: Context, owner: str, start: list[runs.StepUpdate] | None, key: str | None) -> Iterator[_Request]:
    """A claimer, registered with the ``ClaimGate`` while it waits for a job."""
    request = _Request(owner, start, key, asyncio.get_running_loop().create_future())
    ctx.claims.pending.append(request)
    try:
        yield request
    finally:
        ctx.claims.pending.remove(request)
        if not request.answer.done():
            request.answer.cancel()  # gone (cancelled, or the wait ran out): no turn may claim for it now


def _withdraw(ctx: Context, owner: str, key: str) -> None:
    """Earlier attempts of ``owner``'s claim ``key`` still waiting here get no job: they answer nothing
    (the runner is no longer listening), and the retry waits in their place."""
    for request in ctx.claims.pending:
        if request.owner == owner and request.key == key and not request.answer.done():
            request.answer.set_result(None)


async def _wait(ctx: Context, request: _Request, seconds: float) -> bool:
    """Until a notify (True), a job claimed for ``request`` by someone else's turn, or ``seconds``."""
    notified = asyncio.ensure_future(ctx.work.wait(seconds))
    try:
        await asyncio.wait({notified, request.answer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not notified.done():
            notified.cancel()
    return notified.done() and not notified.cancelled() and notified.result()


@dataclass(slots=True)
class _Request:
    """A long-polling claimer. Whoever's turn comes first claims for every one waiting, and answers it."""

    owner: str
    start: list[runs.StepUpdate] | None
    key: str | None  # the claim's key, kept with the lease
    answer: asyncio.Future[dict[str, Any] | None]  # the job; None: withdrawn for a retry of the same claim


async def _claim_in_turn(ctx: Context, request: _Request, *, notified: bool) -> dict[str, Any] | None:
    """A job for ``request``, claimed through this process's ``ClaimGate``.

    Claimers take turns. The one whose turn it is claims, in one transaction, a deployment for itself
    and for every claimer waiting (a layer of a cascade becoming ready wakes many at once); those take
    their answer as soon as it is there, without asking the database. A turn is skipped when a look
    begun after the notify that woke this claimer found nothing.
    """
    if request.answer.done():  # answered while it waited
        return request.answer.result()
    gate = ctx.claims
    if not await _turn(gate, request):
        return request.answer.result()  # answered in the turn that was under way
    try:
        if request.answer.done():  # answered by a turn that went first while this one waited for the lock
            return request.answer.result()
        if notified and gate.empty_at == ctx.work.generation:
            return None
        if ctx.work.closed:  # shutting down: no new lease (checked in the turn: none under way may claim for it)
            return None
        await _take_turn(ctx, request.start is not None)
        return request.answer.result() if request.answer.done() else None
    finally:
        gate.lock.release()


async def _turn(gate: ClaimGate, request: _Request) -> bool:
    """Take the turn (True), or find ``request`` answered by the turn under way (False).

    A free turn is taken without a pass of the event loop, which on a busy server is what a claimer
    woken by a finish would otherwise wait for while the turn is already its."""
    if not gate.lock.locked():
        await gate.lock.acquire()  # free: returns at once
        return True
    turn = asyncio.ensure_future(gate.lock.acquire())
    try:
        await asyncio.wait({turn, request.answer}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled while waiting: give the turn on
        _give_up(gate, turn)
        raise
    if request.answer.done():
        _give_up(gate, turn)
        return False
    return True


def _give_up(gate: ClaimGate, turn: asyncio.Future[bool]) -> None:
    if turn.done() and not turn.cancelled():
        gate.lock.release()  # the turn came too: pass it on unused
    else:
        turn.cancel()


async def hand_off(ctx: Context) -> None:
    """Claim for the waiting claimers now, from the call that just queued work (a finish whose cascade
    moved on), when no turn is under way.

    The notify would wake them to claim the same, but each wake-up is a pass of the event loop, and on
    a busy server every pass waits behind every request that is ready: the members a finish made ready
    would start that much later. This turn costs what the woken claimers' turn would have cost; they
    find their answer, or that the look came after their notify (``ClaimGate.empty_at``).
    """
    gate = ctx.claims
    if gate.lock.locked() or ctx.work.closed or not any(not request.answer.done() for request in gate.pending):
        return
    async with gate.lock:
        await _take_turn(ctx, starting=True)
        await _take_turn(ctx, starting=False)


async def _take_turn(ctx: Context, starting: bool) -> None:
    """Claim for every unanswered claimer that asks to start (protocol 2), or every one that does not,
    and answer those that got a job."""
    gate = ctx.claims
    generation = ctx.work.generation
    batch: dict[str, _Request] = {}  # one request per owner: a job is answered by its owner's name
    for request in gate.pending:
        if not request.answer.done() and (request.start is not None) == starting:
            batch.setdefault(request.owner, request)
    if not batch:
        return
    gate.attempts += 1
    jobs = await _claim_for(ctx, list(batch.values()))
    if len(jobs) < len(batch):
        gate.empty_at = generation
    for request in batch.values():
        job = jobs.get(request.owner)
        if job is not None and not request.answer.done():
            request.answer.set_result(job)


async def _claim_for(ctx: Context, batch: list[_Request]) -> dict[str, dict[str, Any]]:
    """Lease (and start, if asked) a deployment for each request, with its short-lived token, in one
    transaction: jobs by owner, for the batch's first requests (fewer when fewer are eligible)."""
    # On SQLite a claim that finds nothing would still have taken the one write lock: looking first
    # costs one read instead. On PostgreSQL the claim's first statement is that look, under no lock.
    if ctx.db.exclusive_writes:
        async with ctx.db.read() as conn:
            if not await rows.any_queued(conn):
                return {}
    start = batch[0].start is not None
    steps = {request.owner: request.start or [] for request in batch}
    keys = {request.owner: request.key for request in batch if request.key is not None}
    async with ctx.db.write() as conn:
        owners = [request.owner for request in batch]
        claimed = await rows.claim_many(
            conn, runner_ids=owners, lease_seconds=ctx.lease_seconds, now=ctx.now, start=start, claim_keys=keys
        )
        if not claimed:
            return {}
        now = ctx.now()  # not before the claim's own time (see ``claim_many``)
        if start:
            await queue.started_in(conn, [(row, steps[row.runner_id]) for row in claimed], now)
        return await _jobs_in(ctx, conn, claimed, now)


async def _redeliver(ctx: Context, owner: str, key: str) -> dict[str, Any] | None:
    """The job of the deployment that ``owner``'s claim with ``key`` leased, again, with a new token.

    The first answer never reached the runner (it asked again), so its token is revoked: no one holds it.
    The lease is renewed: the retries may have taken a good part of it.
    """
    async with ctx.db.write() as conn:
        row = await rows.leased_by_claim(conn, owner, key)
        if row is None:
            return None
        now = ctx.now()
        if not await rows.update(conn, row.id, (row.status,), lease_expires_at=now + ctx.lease_seconds):
            return None  # PostgreSQL: it ended meanwhile (its lease ran out, or it was cancelled)
        await conn.execute(queue.DELETE_TOKENS, {"b_deployment_id": row.id})
        jobs = await _jobs_in(ctx, conn, [row], now)
    log.info("deployment %s handed again to runner %s: the answer to its claim was lost", row.id, owner)
    return jobs[owner]


async def _jobs_in(ctx: Context, conn: Any, claimed: list[Any], now: float) -> dict[str, dict[str, Any]]:
    """The jobs of deployments leased in ``conn``'s transaction, by runner: each with a new deployment
    token (stored in the same transaction) and its upstreams' outputs."""
    values: dict[str, str] = {}
    new_tokens = []
    for row in claimed:
        values[row.id] = new_token_value()
        timeout = int(doc.option(row.settings, "timeout") or DEFAULT_TIMEOUT_SECONDS)
        new_tokens.append(
            {
                "id": str(uuid.uuid4()),
                "hash": hash_token(values[row.id]),
                "name": f"deployment {row.id}",
                "kind": TokenKind.DEPLOYMENT.value,
                "org": row.org,
                "deployment_id": row.id,
                "created_at": now,
                "expires_at": now + timeout + 600,
            }
        )
    await pipelined.send(conn, _INSERT_TOKEN, new_tokens)
    upstream = await webhook_rows.upstream_outputs_of(conn, [row.stack_id for row in claimed])
    jobs = {}
    for row in claimed:
        jobs[row.runner_id] = job = _job(ctx, row, values[row.id], upstream.get(row.stack_id, []))
        if row.status == Status.RUNNING.value:  # started by its claim (protocol 2)
            job["started"] = True
    return jobs


def owner_of(principal: Principal, runner_id: str) -> str:
    principal.require_runner()
    return f"{principal.name}/{runner_id}"


def check_steps(updates: list[runs.StepUpdate]) -> list[runs.StepUpdate]:
    for update in updates:
        if not 0 <= update.index < MAX_STEPS:
            raise InvalidInput(f"step index must be between 0 and {MAX_STEPS - 1}")
        if update.status not in {"not-started", "running", "failed", "succeeded"}:
            raise InvalidInput("step status must be not-started, running, failed or succeeded")
        if not 1 <= len(update.name) <= 40:
            raise InvalidInput("a step name has 1-40 characters")
    return updates


async def report_steps(
    ctx: Context, principal: Principal, runner_id: str, deployment_id: str, updates: list[runs.StepUpdate]
) -> None:
    """Several step transitions (the previous step done, the next one running) in one transaction."""
    await append_logs(ctx, principal, runner_id, deployment_id, [], check_steps(updates))


async def append_logs(
    ctx: Context,
    principal: Principal,
    runner_id: str,
    deployment_id: str,
    lines: list[runs.LogLine],
    steps: list[runs.StepUpdate] | None = None,
) -> None:
    """Log lines and step transitions, in one transaction."""
    owner = owner_of(principal, runner_id)
    now = ctx.now()
    async with ctx.db.write() as conn:
        row = await queue.owned(conn, deployment_id, owner)
        await runs.apply_steps(conn, deployment_id, check_steps(steps or []), now, earliest=_step_floor(row, now))
        await runs.append_logs(conn, deployment_id, lines, max_bytes=ctx.max_log_bytes, now=now, state=row)


def _step_floor(row: Any, now: float) -> float:
    """Step times a runner reports are kept after the deployment started (its clock may be behind ours)."""
    return float(row.started_at) if row.started_at is not None else now


def seal_outputs(ctx: Context, outputs: dict[str, Any], secret_keys: set[str]) -> dict[str, Any]:
    return {
        "plain": {k: v for k, v in outputs.items() if k not in secret_keys},
        "sealed": {k: ctx.secrets.seal(_json(v)) for k, v in outputs.items() if k in secret_keys},
    }


def _json(value: Any) -> str:
    return json.dumps(value)


def open_outputs(ctx: Context, stored: dict[str, Any] | None, show_secrets: bool) -> dict[str, Any]:
    if not stored:
        return {}
    out = dict(stored.get("plain") or {})
    for key, sealed in (stored.get("sealed") or {}).items():
        out[key] = json.loads(ctx.secrets.open(sealed)) if show_secrets else MASK
    return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class Result:
    status: Status
    reason: str | None = None
    outputs: dict[str, Any] | None = None
    secret_outputs: frozenset[str] = frozenset()
    resource_changes: dict[str, int] | None = None


async def finish(
    ctx: Context,
    principal: Principal,
    runner_id: str,
    deployment_id: str,
    result: Result,
    steps: list[runs.StepUpdate] | None = None,
    lines: list[runs.LogLine] | None = None,
    *,
    retried: bool = False,
) -> Any:
    """End a run: the last steps and log lines, status, outputs (on the stack only after a successful
    update), events, token revoked; all in one transaction. Then the waiting claimers get the work it
    made ready (``hand_off``).

    A ``retried`` finish (the runner sent it again: the answer was lost on the way) that finds the
    deployment already ended by this runner as it reports is answered as done."""
    finished = await _finish(ctx, owner_of(principal, runner_id), deployment_id, result, steps, lines, retried)
    ctx.work.notify()
    try:
        await hand_off(ctx)  # the members this finish made ready start now, not after the wake-ups
    except Exception:  # the finish has committed; the woken claimers will try again
        log.exception("claim after the finish of deployment %s failed", deployment_id)
    return finished


async def finish_and_claim(
    ctx: Context,
    principal: Principal,
    runner_id: str,
    deployment_id: str,
    result: Result,
    steps: list[runs.StepUpdate] | None = None,
    lines: list[runs.LogLine] | None = None,
    *,
    start: list[runs.StepUpdate] | None = None,
    key: str | None = None,
    retried: bool = False,
) -> tuple[Any, dict[str, Any] | None]:
    """``finish``, then (protocol 3) claim the same runner's next deployment, as a claim that does not
    wait would: the finished row, and the job or None. The claim is a transaction of its own, after the
    finish's commit, and takes a turn for the waiting claimers too. ``key`` and ``retried`` are the
    claim's, as for ``claim``: a retried finish gets back the job its lost answer carried.

    The runner that made members ready is free at that moment; without this it would have to send its
    claim through a busy event loop while they wait."""
    owner = owner_of(principal, runner_id)
    if start is not None:
        check_steps(start)
    finished = await _finish(ctx, owner, deployment_id, result, steps, lines, retried)
    ctx.work.notify()
    if retried and key is not None and (job := await _redeliver(ctx, owner, key)) is not None:
        return finished, job
    with _waiting(ctx, owner, start, key) as request:
        try:
            job = await _claim_in_turn(ctx, request, notified=False)
        except Exception:  # the finish has committed: report it, and let the runner claim as usual
            log.exception("claim after the finish of deployment %s failed", deployment_id)
            job = None
        if job is None and request.answer.done():  # as in ``claim``: never drop a job leased to it
            job = request.answer.result()
    return finished, job


async def _finish(
    ctx: Context,
    owner: str,
    deployment_id: str,
    result: Result,
    steps: list[runs.StepUpdate] | None,
    lines: list[runs.LogLine] | None,
    retried: bool = False,
) -> Any:
    if result.status not in {Status.SUCCEEDED, Status.FAILED}:
        raise InvalidInput("a run finishes as succeeded or failed")
    now = ctx.now()
    async with ctx.db.write() as conn:
        if retried and (done := await _finished_as(conn, deployment_id, owner, result)) is not None:
            return done
        # The reads that do not depend on the deployment's row go out with it: one round trip on PostgreSQL.
        checked = check_steps(steps or [])
        stored_steps = await runs.submit_steps_among(conn, deployment_id, checked)
        stored_lines = await runs.submit_known_lines(conn, deployment_id, lines or [])
        succeeded = result.status is Status.SUCCEEDED
        outputs_before = await cascade_rows.submit_stack_outputs_of(conn, deployment_id) if succeeded else None
        row = await queue.owned(conn, deployment_id, owner)
        await runs.apply_steps(conn, deployment_id, checked, now, earliest=_step_floor(row, now), stored=stored_steps)
        await runs.append_logs(
            conn, deployment_id, lines or [], max_bytes=ctx.max_log_bytes, now=now, state=row, stored=stored_lines
        )
        sealed = seal_outputs(ctx, result.outputs, set(result.secret_outputs)) if result.outputs is not None else None
        updated = succeeded and row.operation == "update"
        if updated and row.cascade_id and outputs_before is not None:  # for triggerOn: outputs-changed edges
            before = (await outputs_before.result()).scalar()
            changed = sealed is not None and open_outputs(ctx, before, True) != open_outputs(ctx, sealed, True)
            await cascade_rows.set_outputs_changed(conn, deployment_id, changed)
        if updated and sealed is not None:
            await runs.set_stack_outputs(conn, row.stack_id, sealed, now)
        extra = {"resourceChanges": result.resource_changes} if result.resource_changes else {}
        return await queue.finish_in(
            conn,
            row,
            result.status,
            result.reason,
            now,
            values={"outputs": sealed, "resource_changes": result.resource_changes},
            **extra,
        )


async def _finished_as(conn: Any, deployment_id: str, owner: str, result: Result) -> Any:
    """The deployment's row when ``owner`` already finished it with ``result``'s status and reason.

    Anything else (still running, or ended otherwise: its lease expired, it was cancelled) is left to
    the finish itself, which then says why it cannot apply."""
    row = await rows.get_state(conn, deployment_id)
    if row is None or row.runner_id != owner or row.status != result.status.value or row.reason != result.reason:
        return None
    return row


async def read_logs(
    ctx: Context,
    principal: Principal,
    org: str,
    project: str,
    stack: str,
    deployment_id: str,
    *,
    continuation: str | None,
    count: int | None,
    job: int | None,
    step: int | None,
    offset: int | None,
) -> dict[str, Any]:
    """Pulumi's two log modes: streaming (nextToken until the end) and one step (offset/count)."""
    principal.require(org, Role.VIEWER, f"stack {ref(org, project, stack)}")
    limit = 100 if count is None else count
    if not 1 <= limit <= 499:
        raise InvalidInput("count must be between 1 and 499")
    async with ctx.db.read() as conn:
        stack_row = await load(conn, org, project, stack)
        row = await rows.get(conn, deployment_id)
        if row is None or row.stack_id != stack_row.id:
            raise NotFound(f"deployment {deployment_id} not found on stack {ref(org, project, stack)}")
        finished = Status(row.status) in TERMINAL
        if step is not None or job is not None:
            if job not in (None, 0):
                raise NotFound(f"deployment {deployment_id} has one job (0)")
            if step is None or not 0 <= step <= _MAX_LOG_NUMBER:
                raise InvalidInput("give 'step' (0-based) together with 'job'")
            start = offset or 0
            if not 0 <= start <= _MAX_LOG_NUMBER:
                raise InvalidInput(f"offset must be between 0 and {_MAX_LOG_NUMBER}")
            lines = await runs.logs_of_step(conn, deployment_id, step, start, limit)
            body: dict[str, Any] = {
                "__type": "DeploymentLogsStep",
                "lines": [{"timestamp": rfc3339(r.created_at), "line": r.line} for r in lines],
            }
            if lines or not finished:
                body["nextOffset"] = start + len(lines)
            return body
        after = log_position(continuation) if continuation else 0
        lines = await runs.logs_after(conn, deployment_id, after, limit)
        # After the lines: a step's row commits with (or before) its first lines, and on PostgreSQL each
        # statement sees what was committed when it began, so every line read here has its step's name.
        names = {s.idx: s.name for s in await runs.steps(conn, deployment_id)}
    body = {
        "__type": "DeploymentLogs",
        "lines": [
            {"header": names.get(r.step, f"step {r.step}"), "timestamp": rfc3339(r.created_at), "line": r.line}
            for r in lines
        ],
    }
    last = lines[-1].id if lines else after
    if not finished or len(lines) == limit:
        body["nextToken"] = str(last)
    return body


# Log line ids and step numbers are INTEGER columns: a bigger number is no position this server gave out
# (and would overflow the database's integer on the way in).
_MAX_LOG_NUMBER = 2**31 - 1


def log_position(token: str) -> int:
    """A log continuation token as the line id it names; ``InvalidInput`` for anything this server cannot
    have given out (only ASCII digits, within the column's range)."""
    if not (token.isascii() and token.isdigit() and len(token) <= 10 and int(token) <= _MAX_LOG_NUMBER):
        raise InvalidInput("continuationToken is not one this server returned")
    return int(token)


async def read_outputs(
    ctx: Context, principal: Principal, org: str, project: str, stack: str, *, show_secrets: bool
) -> dict[str, Any]:
    if not principal.may_read_outputs(org):
        raise NotFound(f"stack {ref(org, project, stack)} not found")
    if show_secrets and not principal.may_see_secret_outputs(org):
        raise Forbidden("this token may not see secret outputs: ask without showSecrets, or use a member token")
    async with ctx.db.read() as conn:
        stack_row = await load(conn, org, project, stack)
    stored = stack_row.outputs or {}
    return {
        "outputs": open_outputs(ctx, stored, show_secrets=show_secrets),
        "secretOutputs": sorted((stored.get("sealed") or {}).keys()),
    }
