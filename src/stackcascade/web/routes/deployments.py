"""The deployment page (the API's ``consoleUrl``): status, steps, logs that stream live; cancel.

``.../live`` is a server-sent event stream for one deployment: new log lines (``log``, with the
log position as the event id, so a reconnecting browser resumes where it was), the status and steps
whenever they change (``state``, as ready-made HTML of the page's regions) and ``end`` once the
deployment is over and its log is read to the end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from stackcascade.domain.deployments import TERMINAL
from stackcascade.domain.errors import CascadeError, Conflict, InvalidInput
from stackcascade.domain.roles import Principal
from stackcascade.services import deployments, runs, stack_view
from stackcascade.services.context import Context
from stackcascade.web import urls
from stackcascade.web.pages import ENV, duration, redirect, render
from stackcascade.web.routes.stacks import may_change
from stackcascade.web.routing import console_router
from stackcascade.web.session import Posted, Viewer, still_signed_in

router = console_router()

LOG_PAGE = 499  # the most one read of the logs API returns
FIRST_PAGES = 10  # the page shows up to ~5000 lines at once; the stream brings the rest
STREAM_PAGES = 4
POLL_SECONDS = 0.5
STREAM_SECONDS = 300.0  # then the browser reconnects, resuming at its last event id
TERMINAL_STATUSES = frozenset(status.value for status in TERMINAL)
REGIONS = {"deployment-summary": "deployment_summary.html", "deployment-steps": "deployment_steps.html"}


@dataclass(frozen=True, slots=True)
class Where:
    org: str
    project: str
    stack: str
    deployment_id: str


@dataclass(slots=True)
class LogChunk:
    """Lines after a position; ``token`` is the position after them (unknown once the log is complete)."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    token: str | None = None
    complete: bool = False  # the deployment is over and every line was read
    more: bool = False  # stopped at the page limit: more lines are waiting


async def read_log(ctx: Context, principal: Principal, where: Where, after: str | None, pages: int) -> LogChunk:
    """Up to ``pages`` reads of the logs API's streaming mode, from ``after`` on."""
    chunk = LogChunk(token=after)
    for _ in range(pages):
        body = await runs.read_logs(
            ctx,
            principal,
            where.org,
            where.project,
            where.stack,
            where.deployment_id,
            continuation=chunk.token,
            count=LOG_PAGE,
            job=None,
            step=None,
            offset=None,
        )
        chunk.lines += body["lines"]
        next_token = body.get("nextToken")
        if next_token is None:
            chunk.complete = True
            return chunk
        chunk.token = next_token
        if len(body["lines"]) < LOG_PAGE:
            return chunk
    chunk.more = True
    return chunk


def log_groups(lines: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Consecutive lines of one step together, under the step's name."""
    groups: list[tuple[str, list[str]]] = []
    for line in lines:
        if not groups or groups[-1][0] != line["header"]:
            groups.append((line["header"], []))
        groups[-1][1].append(line["line"])
    return groups


def headline(row: Any) -> str:
    """One sentence a newcomer reads first: what is happening, or what happened and why."""
    status = row.status
    if status == "not-started":
        if row.stack_paused:
            return "Queued, but the stack is paused: it waits until the stack is resumed."
        return "Queued: it starts when a runner is free and no other deployment of this stack runs."
    if status in ("accepted", "running"):
        if row.cancel_requested:
            return "Cancelling: the runner was asked to stop it."
        return "Starting on a runner." if status == "accepted" else "Running."
    took = f" in {duration(row.started_at, row.finished_at)}" if row.started_at else ""
    if status == "succeeded":
        return f"Succeeded{took}."
    if status == "failed":
        return f"Failed{took}: {row.reason}." if row.reason else f"Failed{took}."
    return f"Skipped: {row.reason}." if row.reason else "Skipped: it never ran."


async def _region_values(
    ctx: Context, principal: Principal, where: Where, row: Any, latest: int, steps: list[Any], csrf: str
) -> dict[str, Any]:
    triggered_by = (
        await stack_view.locate_deployment(ctx, principal, where.org, row.triggered_by) if row.triggered_by else None
    )
    return {
        "org": where.org,
        "project": where.project,
        "stack": where.stack,
        "ref": f"{where.project}/{where.stack}",
        "row": row,
        "latest": latest,
        "steps": steps,
        "triggered_by": triggered_by,
        "headline": headline(row),
        "terminal": row.status in TERMINAL_STATUSES,
        "can_change": may_change(principal, where.org),
        "csrf": csrf,
    }


@router.get("/{org}/{project}/{stack}/deployments")
async def deployment_list(org: str, project: str, stack: str, _principal: Viewer) -> Response:
    return RedirectResponse(urls.stack(org, project, stack) + "#history", status_code=303)


def _version(digits: str) -> int:
    """The version ASCII digits name; one with more digits than any version has (the service answers 404
    for what the column cannot hold) is not converted: int() refuses strings of over 4,300 digits."""
    return int(digits) if len(digits) <= 12 else 10**12


@router.get("/{org}/{project}/{stack}/deployments/{deployment_id}")
async def show_deployment(
    request: Request, org: str, project: str, stack: str, deployment_id: str, principal: Viewer
) -> Response:
    ctx: Context = request.app.state.context
    if deployment_id.isascii() and deployment_id.isdigit():  # a version, as webhook payloads link them (Pulumi's)
        found, _, _ = await deployments.get_by_version(ctx, principal, org, project, stack, _version(deployment_id))
        return RedirectResponse(urls.deployment(org, project, stack, found.id), status_code=303)
    where = Where(org, project, stack, deployment_id)
    row, latest, steps = await deployments.get(ctx, principal, org, project, stack, deployment_id)
    log = await read_log(ctx, principal, where, None, FIRST_PAGES)
    values = await _region_values(ctx, principal, where, row, latest, steps, getattr(request.state, "csrf", ""))
    stream = None
    if not log.complete:
        stream = urls.deployment_action(org, project, stack, deployment_id, "live") + f"?after={log.token or '0'}"
    return render(
        request,
        "deployment.html",
        section="overview",
        **values,
        log_groups=log_groups(log.lines),
        last_header=log.lines[-1]["header"] if log.lines else "",
        stream=stream,
        configuration=stack_view.settings_view(row.settings, None),
        mask=stack_view.MASK,
    )


@router.post("/{org}/{project}/{stack}/deployments/{deployment_id}/cancel")
async def cancel(
    request: Request, org: str, project: str, stack: str, deployment_id: str, submission: Posted
) -> Response:
    ctx: Context = request.app.state.context
    page = urls.deployment(org, project, stack, deployment_id)
    try:
        row = await deployments.cancel(ctx, submission.principal, org, project, stack, deployment_id)
    except Conflict as exc:  # it finished meanwhile: show it, and say so
        return redirect(page, flash=exc.message[:1].upper() + exc.message[1:] + ".")
    if row.status == "skipped":
        message = f"Deployment #{row.version} was cancelled before it started: it is skipped."
    else:
        message = f"Cancelling deployment #{row.version}: the runner stops it and it ends failed (cancelled)."
    return redirect(page, flash=message)


@router.get("/{org}/{project}/{stack}/deployments/{deployment_id}/live")
async def follow(
    request: Request,
    org: str,
    project: str,
    stack: str,
    deployment_id: str,
    principal: Viewer,
    after: Annotated[str, Query(max_length=20)] = "0",
) -> StreamingResponse:
    ctx: Context = request.app.state.context
    await deployments.get(ctx, principal, org, project, stack, deployment_id)  # access, before the stream starts
    start = request.headers.get("last-event-id") or after
    try:  # checked before the stream starts: a bad position is a 400, not a stream that breaks
        runs.log_position(start)
    except InvalidInput:
        raise InvalidInput("'after' is a log position this server gave out") from None
    where = Where(org, project, stack, deployment_id)
    return StreamingResponse(
        _follow(request, ctx, principal, where, start),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


def _event(kind: str, data: object, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data)}\n\n"


def _state_key(row: Any, steps: list[Any]) -> tuple[Any, ...]:
    return (
        row.status,
        row.reason,
        bool(row.cancel_requested),
        row.started_at,
        row.finished_at,
        tuple((s.idx, s.status, s.started_at, s.finished_at) for s in steps),
    )


async def _follow(request: Request, ctx: Context, principal: Principal, where: Where, token: str) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_SECONDS
    csrf = getattr(request.state, "csrf", "")
    shown: tuple[Any, ...] | None = None
    log_read = False  # every line was sent: the deployment is over
    yield "retry: 1000\nevent: hello\ndata: {}\n\n"
    while True:
        try:
            # The status first: when it is final, the log read after it is complete (both are written together).
            row, latest, steps = await deployments.get(
                ctx, principal, where.org, where.project, where.stack, where.deployment_id
            )
            more = False
            if not log_read:
                log = await read_log(ctx, principal, where, token, STREAM_PAGES)
                log_read, more = log.complete, log.more
                if not await still_signed_in(request):  # after the read: nothing read once revoked is sent
                    yield _event("end", {"message": "your session ended; sign in again"})
                    return
                if log.lines:
                    token = log.token or token
                    yield _event("log", {"lines": log.lines}, None if log.complete else token)
            key = _state_key(row, steps)
            if key != shown:
                shown = key
                values = await _region_values(ctx, principal, where, row, latest, steps, csrf)
                if not await still_signed_in(request):
                    yield _event("end", {"message": "your session ended; sign in again"})
                    return
                regions = {region: ENV.get_template(name).render(values) for region, name in REGIONS.items()}
                yield _event("state", {"status": row.status, "terminal": values["terminal"], "regions": regions})
        except CascadeError as exc:  # the stack or deployment went away, or access ended
            yield _event("end", {"message": exc.message})
            return
        if log_read and row.status in TERMINAL_STATUSES:
            yield _event("end", {"status": row.status})
            return
        if loop.time() > ends or ctx.stopping or await request.is_disconnected():
            return
        if not more:
            await ctx.outbox.wait(POLL_SECONDS)
            if ctx.stopping:  # the server is shutting down: EventSource reconnects (with Last-Event-ID)
                return
