"""Stack and organization webhooks (Pulumi paths), their deliveries, and the stack references.

Both scopes share the service; each route only builds its ``Scope`` from the path.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.responses import JSONResponse

from stackcascade.api import serializers
from stackcascade.api.body import json_object
from stackcascade.api.deps import Caller, Ctx
from stackcascade.api.routing import RouteTable
from stackcascade.api.schemas import (
    ERRORS,
    ListStackReferencesResponse,
    Webhook,
    WebhookDelivery,
    WebhookResponse,
    body,
)
from stackcascade.services import webhook_delivery, webhooks
from stackcascade.services.webhooks import Scope

router = RouteTable(tags=["webhooks"], responses=ERRORS)
STACK = "/api/stacks/{org}/{project}/{stack}/hooks"
ORG = "/api/orgs/{org}/hooks"
_ONE = {200: {"model": WebhookResponse}}
_CREATED = {201: {"model": WebhookResponse}}
_MANY = {200: {"model": list[WebhookResponse]}}
_DELIVERY = {200: {"model": WebhookDelivery}}
_DELIVERIES = {200: {"model": list[WebhookDelivery]}}
PageSize = Annotated[int | None, Query(alias="pageSize", description="1-100, default 50")]
Before = Annotated[str | None, Query(description="continue after this attempt id (the last of the previous page)")]


async def _create(ctx: Ctx, caller: Caller, scope: Scope, request: Request) -> JSONResponse:
    row = await webhooks.create(ctx, caller, scope, await json_object(request))
    return JSONResponse(serializers.webhook(row), status_code=201)


async def _update(ctx: Ctx, caller: Caller, scope: Scope, name: str, request: Request) -> JSONResponse:
    row = await webhooks.update(ctx, caller, scope, name, await json_object(request))
    return JSONResponse(serializers.webhook(row))


def _list(rows: list[Any]) -> JSONResponse:
    return JSONResponse([serializers.webhook(row) for row in rows])


def _deliveries(rows: list[Any]) -> JSONResponse:
    return JSONResponse([serializers.webhook_delivery(row) for row in rows])


# --- stack webhooks ---------------------------------------------------------------------------------


@router.post(STACK, status_code=201, response_model=None, responses=_CREATED, openapi_extra=body(Webhook))
async def create_stack_webhook(
    ctx: Ctx, caller: Caller, org: str, project: str, stack: str, request: Request
) -> JSONResponse:
    return await _create(ctx, caller, Scope(org, project, stack), request)


@router.get(STACK, response_model=None, responses=_MANY)
async def list_stack_webhooks(ctx: Ctx, caller: Caller, org: str, project: str, stack: str) -> JSONResponse:
    return _list(await webhooks.list_webhooks(ctx, caller, Scope(org, project, stack)))


@router.get(STACK + "/{name}", response_model=None, responses=_ONE)
async def get_stack_webhook(ctx: Ctx, caller: Caller, org: str, project: str, stack: str, name: str) -> JSONResponse:
    return JSONResponse(serializers.webhook(await webhooks.get(ctx, caller, Scope(org, project, stack), name)))


@router.patch(STACK + "/{name}", response_model=None, responses=_ONE, openapi_extra=body(Webhook))
async def update_stack_webhook(
    ctx: Ctx, caller: Caller, org: str, project: str, stack: str, name: str, request: Request
) -> JSONResponse:
    return await _update(ctx, caller, Scope(org, project, stack), name, request)


@router.delete(STACK + "/{name}", status_code=204, response_model=None)
async def delete_stack_webhook(ctx: Ctx, caller: Caller, org: str, project: str, stack: str, name: str) -> Response:
    await webhooks.delete(ctx, caller, Scope(org, project, stack), name)
    return Response(status_code=204)


@router.post(STACK + "/{name}/ping", response_model=None, responses=_DELIVERY)
async def ping_stack_webhook(ctx: Ctx, caller: Caller, org: str, project: str, stack: str, name: str) -> JSONResponse:
    row = await webhook_delivery.ping(ctx, caller, Scope(org, project, stack), name)
    return JSONResponse(serializers.webhook_delivery(row))


@router.get(STACK + "/{name}/deliveries", response_model=None, responses=_DELIVERIES)
async def list_stack_webhook_deliveries(
    ctx: Ctx,
    caller: Caller,
    org: str,
    project: str,
    stack: str,
    name: str,
    page_size: PageSize = None,
    before: Before = None,
) -> JSONResponse:
    scope = Scope(org, project, stack)
    return _deliveries(await webhook_delivery.history(ctx, caller, scope, name, page_size=page_size, before=before))


@router.post(STACK + "/{name}/deliveries/{event}/redeliver", response_model=None, responses=_DELIVERY)
async def redeliver_stack_webhook_event(
    ctx: Ctx, caller: Caller, org: str, project: str, stack: str, name: str, event: str
) -> JSONResponse:
    row = await webhook_delivery.redeliver(ctx, caller, Scope(org, project, stack), name, event)
    return JSONResponse(serializers.webhook_delivery(row))


# --- organization webhooks --------------------------------------------------------------------------


@router.post(ORG, status_code=201, response_model=None, responses=_CREATED, openapi_extra=body(Webhook))
async def create_org_webhook(ctx: Ctx, caller: Caller, org: str, request: Request) -> JSONResponse:
    return await _create(ctx, caller, Scope(org), request)


@router.get(ORG, response_model=None, responses=_MANY)
async def list_org_webhooks(ctx: Ctx, caller: Caller, org: str) -> JSONResponse:
    return _list(await webhooks.list_webhooks(ctx, caller, Scope(org)))


@router.get(ORG + "/{name}", response_model=None, responses=_ONE)
async def get_org_webhook(ctx: Ctx, caller: Caller, org: str, name: str) -> JSONResponse:
    return JSONResponse(serializers.webhook(await webhooks.get(ctx, caller, Scope(org), name)))


@router.patch(ORG + "/{name}", response_model=None, responses=_ONE, openapi_extra=body(Webhook))
async def update_org_webhook(ctx: Ctx, caller: Caller, org: str, name: str, request: Request) -> JSONResponse:
    return await _update(ctx, caller, Scope(org), name, request)


@router.delete(ORG + "/{name}", status_code=204, response_model=None)
async def delete_org_webhook(ctx: Ctx, caller: Caller, org: str, name: str) -> Response:
    await webhooks.delete(ctx, caller, Scope(org), name)
    return Response(status_code=204)


@router.post(ORG + "/{name}/ping", response_model=None, responses=_DELIVERY)
async def ping_org_webhook(ctx: Ctx, caller: Caller, org: str, name: str) -> JSONResponse:
    return JSONResponse(serializers.webhook_delivery(await webhook_delivery.ping(ctx, caller, Scope(org), name)))


@router.get(ORG + "/{name}/deliveries", response_model=None, responses=_DELIVERIES)
async def list_org_webhook_deliveries(
    ctx: Ctx, caller: Caller, org: str, name: str, page_size: PageSize = None, before: Before = None
) -> JSONResponse:
    rows = await webhook_delivery.history(ctx, caller, Scope(org), name, page_size=page_size, before=before)
    return _deliveries(rows)


@router.post(ORG + "/{name}/deliveries/{event}/redeliver", response_model=None, responses=_DELIVERY)
async def redeliver_org_webhook_event(ctx: Ctx, caller: Caller, org: str, name: str, event: str) -> JSONResponse:
    row = await webhook_delivery.redeliver(ctx, caller, Scope(org), name, event)
    return JSONResponse(serializers.webhook_delivery(row))


# --- the deployment graph as stack references ------------------------------------------------------


@router.get(
    "/api/stacks/{org}/{project}/{stack}/upstreamreferences",
    response_model=None,
    responses={200: {"model": ListStackReferencesResponse}},
    tags=["stacks"],
    summary="Stacks whose deployment webhooks deploy this stack",
)
async def upstream_references(ctx: Ctx, caller: Caller, org: str, project: str, stack: str) -> JSONResponse:
    rows = await webhooks.references(ctx, caller, Scope(org, project, stack), downstream=False)
    return JSONResponse({"referencedStacks": [serializers.stack_reference(row) for row in rows]})


@router.get(
    "/api/stacks/{org}/{project}/{stack}/downstreamreferences",
    response_model=None,
    responses={200: {"model": ListStackReferencesResponse}},
    tags=["stacks"],
    summary="Stacks this stack's deployment webhooks deploy",
)
async def downstream_references(ctx: Ctx, caller: Caller, org: str, project: str, stack: str) -> JSONResponse:
    rows = await webhooks.references(ctx, caller, Scope(org, project, stack), downstream=True)
    return JSONResponse({"referencedStacks": [serializers.stack_reference(row) for row in rows]})
