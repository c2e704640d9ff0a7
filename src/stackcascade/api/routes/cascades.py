"""Cascades (stackcascade extension): list, read, and approve / reject / retry a member."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response

from stackcascade.api import serializers
from stackcascade.api.body import json_object
from stackcascade.api.deps import Caller, Ctx
from stackcascade.api.routing import RouteTable
from stackcascade.api.schemas import (
    ERRORS,
    Cascade,
    CascadeList,
    DeploymentGraph,
    ExternalEvent,
    ExternalEventResult,
    ImpactPlan,
    StackCascadeSettings,
    body,
)
from stackcascade.services import cascade_edges, cascades, external_events

router = RouteTable(tags=["cascades"], responses=ERRORS)
BASE = "/api/orgs/{org}/cascades"
MEMBER = BASE + "/{cascade_id}/members/{project}/{stack}"
PageSize = Annotated[int, Query(alias="pageSize", description="1-100, newest first")]
Operation = Annotated[str, Query(description="update (default), preview, refresh or destroy")]
Continuation = Annotated[
    str | None, Query(alias="continuationToken", description="from the previous page; absent on the last page")
]
StatusFilter = Annotated[
    str | None,
    Query(description="only cascades in this status: running, succeeded or failed (several: comma-separated)"),
]


@router.get(BASE, response_model=None, responses={200: {"model": CascadeList}})
async def list_cascades(
    ctx: Ctx,
    caller: Caller,
    org: str,
    page_size: PageSize = 50,
    continuation: Continuation = None,
    status: StatusFilter = None,
) -> JSONResponse:
    rows, token = await cascades.list_cascades(
        ctx, caller, org, limit=page_size, continuation=continuation, status=status
    )
    payload: dict[str, Any] = {"cascades": [serializers.cascade_summary(row) for row in rows]}
    if token is not None:
        payload["continuationToken"] = token
    return JSONResponse(payload)


@router.get(BASE + "/{cascade_id}", response_model=None, responses={200: {"model": Cascade}})
async def get_cascade(ctx: Ctx, caller: Caller, org: str, cascade_id: str) -> JSONResponse:
    return await _answer(ctx, caller, org, cascade_id)


async def _answer(ctx: Ctx, caller: Caller, org: str, cascade_id: str) -> JSONResponse:
    row, members = await cascades.get(ctx, caller, org, cascade_id)
    return JSONResponse(serializers.cascade(row, members, cascade_edges.edge_states(row, members)))


@router.post(MEMBER + "/approve", response_model=None, responses={200: {"model": Cascade}})
async def approve_member(ctx: Ctx, caller: Caller, org: str, cascade_id: str, project: str, stack: str) -> JSONResponse:
    """Let a member that awaits approval run; who approved is recorded."""
    await cascades.approve(ctx, caller, org, cascade_id, f"{project}/{stack}")
    return await _answer(ctx, caller, org, cascade_id)


@router.post(MEMBER + "/reject", response_model=None, responses={200: {"model": Cascade}})
async def reject_member(ctx: Ctx, caller: Caller, org: str, cascade_id: str, project: str, stack: str) -> JSONResponse:
    """Skip a member that awaits approval (and, through it, what only it would have fired)."""
    await cascades.reject(ctx, caller, org, cascade_id, f"{project}/{stack}")
    return await _answer(ctx, caller, org, cascade_id)


@router.post(MEMBER + "/retry", response_model=None, responses={200: {"model": Cascade}})
async def retry_member(ctx: Ctx, caller: Caller, org: str, cascade_id: str, project: str, stack: str) -> JSONResponse:
    """Run a failed member again; the descendants it had stopped wait for it again."""
    await cascades.retry(ctx, caller, org, cascade_id, f"{project}/{stack}")
    return await _answer(ctx, caller, org, cascade_id)


async def impact_plan(
    ctx: Ctx, caller: Caller, org: str, project: str, stack: str, operation: Operation = "update"
) -> Response:
    """The members (with their waves) and the edges between them that a change would set off; nothing runs."""
    plan = await cascades.impact_plan(ctx, caller, org, project, stack, operation)
    return Response(plan.json(), media_type="application/json")


PLAN_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"model": ImpactPlan}}
router.get(
    "/api/stacks/{org}/{project}/{stack}/cascade-plan",
    response_model=None,
    responses=PLAN_RESPONSES,
    summary="Impact plan: the cascade a change to this stack would start (nothing runs)",
)(impact_plan)
router.get(
    "/api/stacks/{org}/{project}/{stack}/plan",
    response_model=None,
    responses=PLAN_RESPONSES,
    summary="Impact plan (the earlier path of .../cascade-plan, kept for existing clients)",
    deprecated=True,
)(impact_plan)


@router.get("/api/orgs/{org}/graph", response_model=None, responses={200: {"model": DeploymentGraph}})
async def deployment_graph(ctx: Ctx, caller: Caller, org: str) -> JSONResponse:
    """The org's deployment graph: every stack with its latest status, every active deployment edge."""
    nodes, edges = await cascades.graph(ctx, caller, org)
    return JSONResponse(serializers.graph(nodes, edges))


STACK_SETTINGS = "/api/stacks/{org}/{project}/{stack}/cascadesettings"


@router.get(STACK_SETTINGS, response_model=None, responses={200: {"model": StackCascadeSettings}})
async def get_stack_cascade_settings(ctx: Ctx, caller: Caller, org: str, project: str, stack: str) -> JSONResponse:
    return JSONResponse({"requireApproval": await cascades.stack_gate(ctx, caller, org, project, stack)})


@router.patch(
    STACK_SETTINGS,
    response_model=None,
    responses={200: {"model": StackCascadeSettings}},
    openapi_extra=body(StackCascadeSettings),
)
async def update_stack_cascade_settings(
    ctx: Ctx, caller: Caller, org: str, project: str, stack: str, request: Request
) -> JSONResponse:
    """``requireApproval``: in every cascade, this stack waits for an approval before it runs.

    Keys match case-insensitively, unknown keys are ignored and a ``null`` means "not given", as
    everywhere in the API (README, "The API"); a patch that gives nothing changes nothing.
    """
    given = {str(key).lower(): value for key, value in (await json_object(request)).items() if value is not None}
    value = await cascades.set_stack_gate(ctx, caller, org, project, stack, given.get("requireapproval"))
    return JSONResponse({"requireApproval": value})


@router.post(
    "/api/stacks/{org}/{project}/{stack}/events",
    status_code=202,
    response_model=None,
    responses={202: {"model": ExternalEventResult}},
    openapi_extra=body(ExternalEvent),
    summary="Record an update made outside stackcascade; starts a cascade like a deployment would",
)
async def record_external_event(
    ctx: Ctx, caller: Caller, org: str, project: str, stack: str, request: Request
) -> JSONResponse:
    result = await external_events.record(ctx, caller, org, project, stack, await json_object(request))
    return JSONResponse(result, status_code=202)
