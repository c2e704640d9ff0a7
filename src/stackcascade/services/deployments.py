"""Deployments: create with effective settings, read, list, cancel; stack and org pause/resume."""

from __future__ import annotations

from typing import Any

from stackcascade.domain.deployments import ACTIVE, TERMINAL, Operation, Status, parse_operation
from stackcascade.domain.errors import Conflict, InvalidInput, NotFound
from stackcascade.domain.names import check_name
from stackcascade.domain.roles import Principal, Role
from stackcascade.services import cascades
from stackcascade.services.context import Context
from stackcascade.services.deployment_settings import normalise
from stackcascade.services.queueing import queue_in
from stackcascade.services.stacks import ensure_org, load, ref
from stackcascade.store import cascades as cascade_rows
from stackcascade.store import deployments as rows
from stackcascade.store import orgs, runs
from stackcascade.store import stacks as stack_rows

MAX_PAGE_SIZE = 100
_CONTROL_KEYS = {"operation", "inheritsettings"}
_CASCADE_INITIATORS = {"cascade", "webhook"}  # deployments a cascade or an edge created never start one


def _parse_request(body: dict[str, Any]) -> tuple[Operation, bool, dict[str, Any]]:
    lowered = {str(k).lower(): v for k, v in body.items()}
    operation = parse_operation(lowered.get("operation"))
    context = next((v for k, v in body.items() if str(k).lower() == "operationcontext"), None)
    if isinstance(context, dict) and any(str(k).lower() == "operation" and v is not None for k, v in context.items()):
        raise InvalidInput("give 'operation' at the top level of the request, not inside operationContext")
    inherit = lowered.get("inheritsettings")
    if inherit is None:
        inherit = True
    if not isinstance(inherit, bool):
        raise InvalidInput("'inheritSettings' must be true or false")
    overrides = {k: v for k, v in body.items() if str(k).lower() not in _CONTROL_KEYS}
    return operation, inherit, overrides


async def create(
    ctx: Context,
    principal: Principal,
    org: str,
    project: str,
    stack: str,
    body: dict[str, Any],
    *,
    initiator: str = "api",
) -> Any:
    """Queue a deployment: effective settings = request merged over saved settings (unless not inherited)."""
    principal.require(org, Role.MEMBER, f"stack {ref(org, project, stack)}")
    operation, inherit, overrides = _parse_request(body)
    # One-off overrides never delete inherited values: the Pulumi SDK sends null for every unset field.
    request_doc = normalise(ctx, overrides, patch=False)
    async with ctx.db.write() as conn:
        stack_row = await stack_rows.find_with_settings(conn, org, project, stack)
        if stack_row is None:
            raise NotFound(f"stack {ref(org, project, stack)} not found")
        root = f"{project}/{stack}"
        planned = (
            await cascades.plan_for(conn, org, root, operation, stack_row.id, graphs=ctx.graphs)
            if initiator not in _CASCADE_INITIATORS
            else None
        )
        started = planned if isinstance(planned, cascades.Started) else None
        now = ctx.now()
        row = await queue_in(
            conn,
            stack_row,
            operation,
            request_doc,
            now=now,
            inherit=inherit,
            initiator=initiator,
            requested_by=principal.name,
            cascade_id=started.id if started else None,
            fires_edges=planned is cascades.PER_EDGE,
        )
        if started is not None:
            await cascades.record_in(conn, started, org, row.id, now)
    ctx.work.notify()
    return row


_MAX_VERSION = 2**31 - 1  # versions are an INTEGER column


async def _find(
    conn: Any, org: str, project: str, stack: str, *, deployment_id: str | None = None, version: int | None = None
) -> Any:
    too_big = version is not None and not 0 <= version <= _MAX_VERSION  # the column's range: no query
    row = (
        None
        if too_big
        else await rows.find_in_stack(conn, org, project, stack, deployment_id=deployment_id, version=version)
    )
    if row is None:
        await load(conn, org, project, stack)  # says "stack not found" when that is the reason
        if deployment_id is not None:
            raise NotFound(f"deployment {deployment_id} not found on stack {ref(org, project, stack)}")
        raise NotFound(f"stack {ref(org, project, stack)} has no deployment version {version}")
    return row


async def _steps(conn: Any, row: Any) -> list[Any]:
    return [] if row.status == Status.NOT_STARTED.value else await runs.steps(conn, row.id)


async def get(
    ctx: Context, principal: Principal, org: str, project: str, stack: str, deployment_id: str
) -> tuple[Any, int, list[Any]]:
    """The deployment, the stack's latest version and the deployment's steps."""
    principal.require(org, Role.VIEWER, f"stack {ref(org, project, stack)}")
    async with ctx.db.read() as conn:
        row = await _find(conn, org, project, stack, deployment_id=deployment_id)
        return row, int(row.latest_version), await _steps(conn, row)


async def get_by_version(
    ctx: Context, principal: Principal, org: str, project: str, stack: str, version: int
) -> tuple[Any, int, list[Any]]:
    principal.require(org, Role.VIEWER, f"stack {ref(org, project, stack)}")
    async with ctx.db.read() as conn:
        row = await _find(conn, org, project, stack, version=version)
        return row, int(row.latest_version), await _steps(conn, row)


def check_paging(page: int | None, page_size: int | None) -> tuple[int, int]:
    page = 1 if page is None else page
    page_size = 10 if page_size is None else page_size
    if page < 1:
        raise InvalidInput("page starts at 1")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
    return page, page_size


async def list_for_stack(
    ctx: Context,
    principal: Principal,
    org: str,
    project: str,
    stack: str,
    *,
    page: int,
    page_size: int,
    ascending: bool,
) -> tuple[list[Any], int]:
    principal.require(org, Role.VIEWER, f"stack {ref(org, project, stack)}")
    async with ctx.db.read() as conn:
        stack_row = await load(conn, org, project, stack)
        return await rows.page(
            conn, org=org, stack_id=stack_row.id, page=page, page_size=page_size, ascending=ascending
        )


async def list_for_org(
    ctx: Context, principal: Principal, org: str, *, page: int, page_size: int, ascending: bool
) -> tuple[list[Any], int]:
    principal.require(org, Role.VIEWER, f"organization {org!r}")
    async with ctx.db.read() as conn:
        return await rows.page(conn, org=org, stack_id=None, page=page, page_size=page_size, ascending=ascending)


async def cancel(ctx: Context, principal: Principal, org: str, project: str, stack: str, deployment_id: str) -> Any:
    """A queued deployment becomes skipped; a running one is asked to stop (the runner ends it failed, cancelled)."""
    principal.require(org, Role.MEMBER, f"stack {ref(org, project, stack)}")
    now = ctx.now()
    skipped = False
    async with ctx.db.write() as conn:
        row = await _find(conn, org, project, stack, deployment_id=deployment_id)
        status = Status(row.status)
        if status in TERMINAL:
            raise Conflict(f"deployment {deployment_id} already finished ({status.value}); nothing to cancel")
        if status is Status.NOT_STARTED:
            reason = f"cancelled by {principal.name}"
            if row.cascade_id:  # the cascade's lock before the deployment's row, as a stack's deletion takes them
                await cascade_rows.lock(conn, row.cascade_id)
            skipped = await rows.update(
                conn,
                deployment_id,
                (Status.NOT_STARTED.value,),
                status=Status.SKIPPED.value,
                reason=reason,
                modified_at=now,
                finished_at=now,
            )
            if skipped and row.cascade_id:  # a member: its cascade moves on in the same transaction
                member = f"{row.project}/{row.stack}"
                await cascades.cancelled_in(conn, row.cascade_id, member, deployment_id, reason, now)
        # Running, or claimed by a runner since it was read above (the compare-and-set found it taken):
        # the runner is asked to stop it. Finished meanwhile: there is nothing left to cancel.
        if not skipped and not await rows.update(
            conn, deployment_id, tuple(s.value for s in ACTIVE), cancel_requested=True, modified_at=now
        ):
            raise Conflict(f"deployment {deployment_id} has already finished; nothing to cancel")
        cancelled = await rows.get(conn, deployment_id)
    if skipped:  # the stack's next queued deployment (or a member the cascade queued) may run now
        ctx.work.notify()
    return cancelled


async def set_stack_paused(
    ctx: Context, principal: Principal, org: str, project: str, stack: str, paused: bool
) -> None:
    principal.require(org, Role.MEMBER, f"stack {ref(org, project, stack)}")
    async with ctx.db.write() as conn:
        stack_row = await load(conn, org, project, stack)
        await stack_rows.set_paused(conn, stack_row.id, paused)
    ctx.work.notify()


async def set_org_paused(ctx: Context, principal: Principal, org: str, paused: bool) -> None:
    principal.require(org, Role.ADMIN, f"organization {org!r}")
    check_name("organization", org, may_start_with_dot=True)  # this may create the org
    async with ctx.db.write() as conn:
        await ensure_org(ctx, conn, org)
        await orgs.set_paused(conn, org, paused)
    ctx.work.notify()


def _counts(by_status: dict[str, int]) -> dict[str, int]:
    counts = {
        "notStarted": by_status.get("not-started", 0),
        "accepted": by_status.get("accepted", 0),
        "running": by_status.get("running", 0),
        "failed": by_status.get("failed", 0),
        "succeeded": by_status.get("succeeded", 0),
        "skipped": by_status.get("skipped", 0),
    }
    counts["total"] = sum(counts.values())
    return counts


async def stack_metadata(ctx: Context, principal: Principal, org: str, project: str, stack: str) -> dict[str, Any]:
    principal.require(org, Role.VIEWER, f"stack {ref(org, project, stack)}")
    async with ctx.db.read() as conn:
        stack_row = await load(conn, org, project, stack)
        org_row = await orgs.get(conn, org)
        by_status = await rows.counts_by_status(conn, org=org, stack_id=stack_row.id)
    org_paused = bool(org_row.paused) if org_row else False
    return {
        "paused": bool(stack_row.paused) or org_paused,
        "stackPaused": bool(stack_row.paused),
        "organizationPaused": org_paused,
        "hasSchedules": False,
        "concurrency": 1,
        "deploymentCounts": _counts(by_status),
    }


async def org_metadata(ctx: Context, principal: Principal, org: str) -> dict[str, Any]:
    principal.require(org, Role.VIEWER, f"organization {org!r}")
    async with ctx.db.read() as conn:
        org_row = await orgs.get(conn, org)
        by_status = await rows.counts_by_status(conn, org=org)
    return {
        "paused": bool(org_row.paused) if org_row else False,
        "concurrency": int(org_row.concurrency) if org_row else ctx.org_concurrency,
        "cascadeMode": org_row.cascade_mode if org_row else "coalesced",
        "deploymentCounts": _counts(by_status),
    }
