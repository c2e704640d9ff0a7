"""The runner protocol (runner tokens only): claim, steps, logs, heartbeat, finish."""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from stackcascade.api.body import json_object
from stackcascade.api.deps import Caller, Ctx
from stackcascade.api.routing import RouteTable
from stackcascade.api.schemas import ERRORS
from stackcascade.domain.deployments import Status
from stackcascade.domain.errors import InvalidInput
from stackcascade.services import queue, runs
from stackcascade.store.runs import LogLine, StepUpdate

router = RouteTable(prefix="/api/runner", tags=["runner protocol"], responses=ERRORS)
MAX_WAIT_SECONDS = 30.0
MAX_LINES_PER_APPEND = 1000
_CLAIM_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _runner_id(body: dict[str, Any]) -> str:
    value = body.get("runnerId")
    if not isinstance(value, str) or not 1 <= len(value) <= 100:
        raise InvalidInput("'runnerId' must be a string of 1-100 characters naming this runner")
    return value


def _claim_key(body: dict[str, Any]) -> str | None:
    """``claimKey`` (optional): the claim's own key, the same in every attempt of one claim."""
    value = body.get("claimKey")
    if value is None:
        return None
    if not isinstance(value, str) or not _CLAIM_KEY.fullmatch(value):
        raise InvalidInput("'claimKey' must be 1-64 letters, digits, '-' or '_', the same in each attempt of a claim")
    return value


def _retried(body: dict[str, Any]) -> bool:
    """``retry`` (optional): true when the runner sends a call again because the answer was lost."""
    value = body.get("retry", False)
    if not isinstance(value, bool):
        raise InvalidInput("'retry' must be true or false")
    return value


def _int(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"'{key}' must be a whole number")
    return value


def _at(item: dict[str, Any]) -> float | None:
    value = item.get("at")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput("a step's 'at' is the time of the transition in epoch seconds")
    return float(value)


def _steps(body: dict[str, Any]) -> list[StepUpdate]:
    """``{"steps": [{"index", "name", "status", "at"?}, ...]}``, or one step as ``{"index", "name", "status"}``.

    ``at`` (optional, epoch seconds): when the runner saw the transition; without it, when it arrives.
    """
    raw = body.get("steps")
    if raw is None:
        raw = [body] if "index" in body else []
    if not isinstance(raw, list) or len(raw) > 20:
        raise InvalidInput('\'steps\' must be a list of at most 20 {"index", "name", "status"} objects')
    updates = []
    for item in raw:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("status"), str)
        ):
            raise InvalidInput('each step is {"index": int, "name": str, "status": str}')
        updates.append(StepUpdate(_int(item, "index"), item["name"], item["status"], _at(item)))
    return runs.check_steps(updates)


@router.post(
    "/claim",
    summary="Long-poll for the next deployment (200 with the job, 204 when the wait ran out or the server stops)",
)
async def claim(ctx: Ctx, caller: Caller, request: Request) -> Response:
    body = await json_object(request)
    wait = body.get("waitSeconds", 0)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_WAIT_SECONDS:
        raise InvalidInput(f"'waitSeconds' must be between 0 and {MAX_WAIT_SECONDS:g}")
    # "start" (optional): the first step transitions; the claimed deployment is started at once with them.
    start = _steps({"steps": body["start"]}) if body.get("start") is not None else None
    job = await runs.claim(
        ctx, caller, _runner_id(body), float(wait), start, key=_claim_key(body), retried=_retried(body)
    )
    return JSONResponse(job) if job is not None else Response(status_code=204)


@router.post("/deployments/{deployment_id}/start")
async def start(ctx: Ctx, caller: Caller, deployment_id: str, request: Request) -> JSONResponse:
    body = await json_object(request)
    owner = runs.owner_of(caller, _runner_id(body))
    row = await queue.start(ctx, deployment_id, owner, _steps(body))
    return JSONResponse({"id": row.id, "status": row.status})


@router.post(
    "/deployments/{deployment_id}/heartbeat",
    summary="Renew the lease; tells the runner when the deployment was cancelled",
)
async def heartbeat(ctx: Ctx, caller: Caller, deployment_id: str, request: Request) -> JSONResponse:
    owner = runs.owner_of(caller, _runner_id(await json_object(request)))
    beat = await queue.heartbeat(ctx, deployment_id, owner)
    return JSONResponse({"leaseExpiresAt": beat.lease_expires_at, "cancelRequested": beat.cancel_requested})


@router.post("/deployments/{deployment_id}/steps", summary="Step transitions, applied together")
async def step(ctx: Ctx, caller: Caller, deployment_id: str, request: Request) -> Response:
    body = await json_object(request)
    await runs.report_steps(ctx, caller, _runner_id(body), deployment_id, _steps(body))
    return Response(status_code=204)


@router.post(
    "/deployments/{deployment_id}/logs", summary="Append log lines; a retried batch (same step/seq) is ignored"
)
async def logs(ctx: Ctx, caller: Caller, deployment_id: str, request: Request) -> Response:
    # ``lines``, and optionally ``steps`` (transitions as for /steps), stored in one transaction.
    body = await json_object(request)
    lines = _lines(body.get("lines"))
    await runs.append_logs(ctx, caller, _runner_id(body), deployment_id, lines, _steps(body))
    return Response(status_code=204)


def _lines(raw: Any) -> list[LogLine]:
    if not isinstance(raw, list) or len(raw) > MAX_LINES_PER_APPEND:
        raise InvalidInput(f"'lines' must be a list of at most {MAX_LINES_PER_APPEND} lines")
    lines = []
    for item in raw:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("line"), str)
            or not isinstance(item.get("timestamp"), (int, float))
        ):
            raise InvalidInput('each line is {"step": int, "seq": int, "line": str, "timestamp": epoch seconds}')
        lines.append(LogLine(_int(item, "step"), _int(item, "seq"), item["line"], float(item["timestamp"])))
    return lines


@router.post("/deployments/{deployment_id}/finish")
async def finish(ctx: Ctx, caller: Caller, deployment_id: str, request: Request) -> JSONResponse:
    body = await json_object(request)
    try:
        status = Status(body.get("status"))
    except ValueError:
        raise InvalidInput("'status' must be succeeded or failed") from None
    outputs = body.get("outputs")
    if outputs is not None and not isinstance(outputs, dict):
        raise InvalidInput("'outputs' must be an object")
    secret_outputs = body.get("secretOutputs") or []
    if not isinstance(secret_outputs, list) or not all(isinstance(k, str) for k in secret_outputs):
        raise InvalidInput("'secretOutputs' must be a list of output names")
    changes = body.get("resourceChanges")
    if changes is not None and (not isinstance(changes, dict) or not all(isinstance(v, int) for v in changes.values())):
        raise InvalidInput("'resourceChanges' must map change kinds to counts")
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidInput("'reason' must be a string")
    lines = _lines(body["lines"]) if body.get("lines") is not None else []
    result = runs.Result(status, reason, outputs, frozenset(secret_outputs), changes)
    # "next" (optional, protocol 3): {"start": [steps]?, "claimKey"?}, claim this runner's next deployment too.
    wanted = body.get("next")
    retried = _retried(body)
    if wanted is None:
        row = await runs.finish(
            ctx, caller, _runner_id(body), deployment_id, result, _steps(body), lines, retried=retried
        )
        return JSONResponse({"id": row.id, "status": row.status, "reason": row.reason})
    if not isinstance(wanted, dict):
        raise InvalidInput("'next' must be an object ({\"start\": [steps]} or {}) asking for the next deployment")
    start = _steps({"steps": wanted["start"]}) if wanted.get("start") is not None else None
    key = _claim_key(wanted)
    row, job = await runs.finish_and_claim(
        ctx, caller, _runner_id(body), deployment_id, result, _steps(body), lines, start=start, key=key, retried=retried
    )
    return JSONResponse({"id": row.id, "status": row.status, "reason": row.reason, "next": job})
