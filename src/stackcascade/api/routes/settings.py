"""Deployment settings: ``/api/stacks/{org}/{project}/{stack}/deployments/settings``."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from stackcascade.api import serializers
from stackcascade.api.body import json_object
from stackcascade.api.deps import Caller, Ctx
from stackcascade.api.routing import RouteTable
from stackcascade.api.schemas import ERRORS, DeploymentSettings, DeploymentSettingsRequest, body
from stackcascade.services import deployment_settings

router = RouteTable(tags=["deployment settings"], responses=ERRORS)
PATH = "/api/stacks/{org}/{project}/{stack}/deployments/settings"
_SETTINGS = {200: {"model": DeploymentSettings}}


@router.get(PATH, response_model=None, responses=_SETTINGS)
async def get_settings(ctx: Ctx, caller: Caller, org: str, project: str, stack: str) -> JSONResponse:
    document, version = await deployment_settings.get(ctx, caller, org, project, stack)
    return JSONResponse(serializers.settings(document, version))


@router.post(
    PATH,
    response_model=None,
    responses=_SETTINGS,
    openapi_extra=body(DeploymentSettingsRequest),
    summary="Merge-patch the settings (a nested null deletes that key)",
)
async def patch_settings(
    ctx: Ctx, caller: Caller, org: str, project: str, stack: str, request: Request
) -> JSONResponse:
    raw = await json_object(request)
    document, version = await deployment_settings.save(ctx, caller, org, project, stack, raw, replace=False)
    return JSONResponse(serializers.settings(document, version))


@router.put(
    PATH,
    response_model=None,
    responses=_SETTINGS,
    openapi_extra=body(DeploymentSettingsRequest),
    summary="Replace the settings",
)
async def replace_settings(
    ctx: Ctx, caller: Caller, org: str, project: str, stack: str, request: Request
) -> JSONResponse:
    raw = await json_object(request)
    document, version = await deployment_settings.save(ctx, caller, org, project, stack, raw, replace=True)
    return JSONResponse(serializers.settings(document, version))


@router.delete(
    PATH, response_model=None, responses={200: {"content": {"application/json": {"schema": {"type": "boolean"}}}}}
)
async def delete_settings(ctx: Ctx, caller: Caller, org: str, project: str, stack: str) -> JSONResponse:
    await deployment_settings.delete(ctx, caller, org, project, stack)
    return JSONResponse(True)
