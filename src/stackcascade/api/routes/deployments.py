"""Deployments of a stack and of an org; pause, resume and metadata."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Request, Response
from fastapi.responses import JSONResponse

from stackcascade.api import serializers
from stackcascade.api.body import json_object
from stackcascade.api.deps import Caller, Ctx
from stackcascade.api.routing import RouteTable
from stackcascade.api.schemas import (
    ERRORS,
    CancelResponse,
    CreateDeploymentRequest,
    CreateDeploymentResponse,
    GetDeploymentResponse,
    ListDeploymentResponseV2,
    OrgDeploymentsMetadata,
    StackDeploymentsMetadata,
    body,
)
from stackcascade.services import deployments

router = RouteTable(tags=["deployments"], responses=ERRORS)
STACK = "/api/stacks/{org}/{project}/{stack}/deployments"
ORG = "/api/orgs/{org}/deployments"

Page = Annotated[int | None, Query(description="1-based page")]
PageSize = Annotated[int | None, Query(alias="pageSize", description="1-100, default 10")]
Ascending = Annotated[bool, Query(alias="asc", description="oldest first")]
Sort = Annotated[str | None, Query(description="accepted for compatibility; deployments are ordered by creation")]


@router.post(
    STACK,
    status_code=202,
    response_model=None,
    responses={202: {"model": CreateDeploymentResponse}},
    openapi_extra=body(CreateDeploymentRequest),
    summary="Queue a deployment",
)
async def create_deployment(
    ctx: Ctx, caller: Caller, org: str, project: str, stack: str, request: Request
) -> JSONResponse:
    row = await deployments.create(ctx, caller, org, project, stack, await json_object(request))
    return JSONResponse(
        {"id": row.id, "consoleUrl": serializers.deployment_url(ctx, row), "version": int(row.version)}, status_code=202
    )


@router.get(STACK, response_model=None, responses={200: {"model": ListDeploymentResponseV2}})
async def list_stack_deployments(
    ctx: Ctx,
    caller: Caller,
    org: str,
    project: str,
    stack: str,
    page: Page = None,
    page_size: PageSize = None,
    ascending: Ascending = False,
    sort: Sort = None,
) -> JSONResponse:
    page, size = deployments.check_paging(page, page_size)
    rows, total = await deployments.list_for_stack(
        ctx, caller, org, project, stack, page=page, page_size=size, ascending=ascending
    )
    return JSONResponse(serializers.deployment_list(ctx, rows, total, size))


@router.get(STACK + "/metadata", response_model=None, responses={200: {"model": StackDeploymentsMetadata}})
async def stack_metadata(ctx: Ctx, caller: Caller, org: str, project: str, stack: str) -> JSONResponse:
    return JSONResponse(await deployments.stack_metadata(ctx, caller, org, project, stack))


@router.post(STACK + "/pause", summary="Hold queued deployments of the stack (running ones finish)")
async def pause_stack(ctx: Ctx, caller: Caller, org: str, project: str, stack: str) -> Response:
    await deployments.set_stack_paused(ctx, caller, org, project, stack, True)
    return Response(status_code=200)


@router.post(STACK + "/resume")
async def resume_stack(ctx: Ctx, caller: Caller, org: str, project: str, stack: str) -> Response:
    await deployments.set_stack_paused(ctx, caller, org, project, stack, False)
    return Response(status_code=200)


@router.get(STACK + "/version/{version}", response_model=None, responses={200: {"model": GetDeploymentResponse}})
async def get_deployment_by_version(
    ctx: Ctx, caller: Caller, org: str, project: str, stack: str, version: Annotated[int, Path(ge=1)]
) -> JSONResponse:
    row, latest, steps = await deployments.get_by_version(ctx, caller, org, project, stack, version)
    return JSONResponse(serializers.deployment(ctx, row, latest, steps))


@router.get(STACK + "/{deployment_id}", response_model=None, responses={200: {"model": GetDeploymentResponse}})
async def get_deployment(
    ctx: Ctx, caller: Caller, org: str, project: str, stack: str, deployment_id: str
) -> JSONResponse:
    row, latest, steps = await deployments.get(ctx, caller, org, project, stack, deployment_id)
    return JSONResponse(serializers.deployment(ctx, row, latest, steps))


@router.post(STACK + "/{deployment_id}/cancel", response_model=None, responses={200: {"model": CancelResponse}})
async def cancel_deployment(
    ctx: Ctx, caller: Caller, org: str, project: str, stack: str, deployment_id: str
) -> JSONResponse:
    row = await deployments.cancel(ctx, caller, org, project, stack, deployment_id)
    return JSONResponse(
        {"id": row.id, "status": row.status, "reason": row.reason, "cancelRequested": bool(row.cancel_requested)}
    )


@router.get(ORG, response_model=None, responses={200: {"model": ListDeploymentResponseV2}})
async def list_org_deployments(
    ctx: Ctx,
    caller: Caller,
    org: str,
    page: Page = None,
    page_size: PageSize = None,
    ascending: Ascending = False,
    sort: Sort = None,
) -> JSONResponse:
    page, size = deployments.check_paging(page, page_size)
    rows, total = await deployments.list_for_org(ctx, caller, org, page=page, page_size=size, ascending=ascending)
    return JSONResponse(serializers.deployment_list(ctx, rows, total, size))


@router.get(ORG + "/metadata", response_model=None, responses={200: {"model": OrgDeploymentsMetadata}})
async def org_metadata(ctx: Ctx, caller: Caller, org: str) -> JSONResponse:
    return JSONResponse(await deployments.org_metadata(ctx, caller, org))


@router.post(ORG + "/pause", summary="Hold every queued deployment of the org (running ones finish)")
async def pause_org(ctx: Ctx, caller: Caller, org: str) -> Response:
    await deployments.set_org_paused(ctx, caller, org, True)
    return Response(status_code=200)


@router.post(ORG + "/resume")
async def resume_org(ctx: Ctx, caller: Caller, org: str) -> Response:
    await deployments.set_org_paused(ctx, caller, org, False)
    return Response(status_code=200)
