"""Reading what runs produced: deployment logs (Pulumi's shapes) and stack outputs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from fastapi.responses import JSONResponse

from stackcascade.api.deps import Caller, Ctx
from stackcascade.api.routing import RouteTable
from stackcascade.api.schemas import ERRORS, DeploymentLogs, StackOutputs
from stackcascade.services import runs

router = RouteTable(tags=["deployments"], responses=ERRORS)


@router.get(
    "/api/stacks/{org}/{project}/{stack}/deployments/{deployment_id}/logs",
    response_model=None,
    responses={200: {"model": DeploymentLogs}},
    summary="Deployment logs: streaming (continuationToken -> nextToken) or one step (job, step, offset, count)",
)
async def get_logs(
    ctx: Ctx,
    caller: Caller,
    org: str,
    project: str,
    stack: str,
    deployment_id: str,
    continuationToken: str | None = None,
    count: int | None = None,
    job: int | None = None,
    step: int | None = None,
    offset: int | None = None,
) -> JSONResponse:
    body = await runs.read_logs(
        ctx,
        caller,
        org,
        project,
        stack,
        deployment_id,
        continuation=continuationToken,
        count=count,
        job=job,
        step=step,
        offset=offset,
    )
    return JSONResponse(body)


@router.get(
    "/api/stacks/{org}/{project}/{stack}/outputs", response_model=None, responses={200: {"model": StackOutputs}}
)
async def get_outputs(
    ctx: Ctx,
    caller: Caller,
    org: str,
    project: str,
    stack: str,
    show_secrets: Annotated[
        bool, Query(alias="showSecrets", description="members and deployments of the org may see secrets")
    ] = False,
) -> JSONResponse:
    return JSONResponse(await runs.read_outputs(ctx, caller, org, project, stack, show_secrets=show_secrets))
