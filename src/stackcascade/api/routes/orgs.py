"""Org-level settings (stackcascade extension): ``/api/orgs/{org}/settings``."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from stackcascade.api.body import json_object
from stackcascade.api.deps import Caller, Ctx
from stackcascade.api.routing import RouteTable
from stackcascade.api.schemas import ERRORS, OrgDeploymentsMetadata, OrgSettingsRequest, body
from stackcascade.services import deployments, org_settings

router = RouteTable(tags=["organizations"], responses=ERRORS)


@router.get(
    "/api/orgs/{org}/settings",
    response_model=None,
    responses={200: {"model": OrgDeploymentsMetadata}},
    summary="Read org settings (concurrency, cascadeMode), as PATCH answers them",
)
async def read_org_settings(ctx: Ctx, caller: Caller, org: str) -> JSONResponse:
    await org_settings.require_existing(ctx, caller, org)
    return JSONResponse(await deployments.org_metadata(ctx, caller, org))


@router.patch(
    "/api/orgs/{org}/settings",
    response_model=None,
    responses={200: {"model": OrgDeploymentsMetadata}},
    openapi_extra=body(OrgSettingsRequest),
    summary="Change org settings (concurrency, cascadeMode)",
)
async def update_org_settings(ctx: Ctx, caller: Caller, org: str, request: Request) -> JSONResponse:
    await org_settings.update(ctx, caller, org, await json_object(request))
    return JSONResponse(await deployments.org_metadata(ctx, caller, org))
