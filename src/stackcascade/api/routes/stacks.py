"""Stacks: ``/api/stacks/{org}/{project}[/{stack}]`` and ``/api/user/stacks``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response
from fastapi.responses import JSONResponse

from stackcascade.api import serializers
from stackcascade.api.body import json_object
from stackcascade.api.deps import Caller, Ctx
from stackcascade.api.routing import RouteTable
from stackcascade.api.schemas import ERRORS, AppStack, CreateStackRequest, CreateStackResponse, ListStacksResponse, body
from stackcascade.services import stacks

router = RouteTable(tags=["stacks"], responses=ERRORS)


@router.post(
    "/api/stacks/{org}/{project}",
    response_model=None,
    responses={200: {"model": CreateStackResponse}},
    openapi_extra=body(CreateStackRequest),
    summary="Create a stack",
)
async def create_stack(ctx: Ctx, caller: Caller, org: str, project: str, request: Request) -> JSONResponse:
    row = await stacks.create(ctx, caller, org, project, await json_object(request))
    return JSONResponse({"messages": [], **serializers.stack(row, None)})


@router.head("/api/stacks/{org}/{project}", summary="Does the project have any stack?")
async def project_exists(ctx: Ctx, caller: Caller, org: str, project: str) -> Response:
    found = await stacks.project_exists(ctx, caller, org, project)
    return Response(status_code=200 if found else 404)


@router.get("/api/stacks/{org}/{project}/{stack}", response_model=None, responses={200: {"model": AppStack}})
async def get_stack(ctx: Ctx, caller: Caller, org: str, project: str, stack: str) -> JSONResponse:
    row, latest = await stacks.get(ctx, caller, org, project, stack)
    return JSONResponse(serializers.stack(row, latest))


@router.delete(
    "/api/stacks/{org}/{project}/{stack}",
    status_code=204,
    summary="Delete a stack (refused while one of its deployments runs)",
)
async def delete_stack(
    ctx: Ctx, caller: Caller, org: str, project: str, stack: str, force: Annotated[bool | None, Query()] = None
) -> Response:
    await stacks.delete(ctx, caller, org, project, stack)
    return Response(status_code=204)


@router.get("/api/user/stacks", response_model=None, responses={200: {"model": ListStacksResponse}})
async def list_user_stacks(
    ctx: Ctx,
    caller: Caller,
    organization: str | None = None,
    project: str | None = None,
    tagName: str | None = None,
    tagValue: str | None = None,
    continuationToken: str | None = None,
    maxResults: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> JSONResponse:
    rows, token = await stacks.list_stacks(
        ctx,
        caller,
        org=organization,
        project=project,
        tag_name=tagName,
        tag_value=tagValue,
        continuation=continuationToken,
        max_results=maxResults,
    )
    payload: dict[str, object] = {"stacks": [serializers.stack_summary(ctx, r) for r in rows]}
    if token:
        payload["continuationToken"] = token
    return JSONResponse(payload)
