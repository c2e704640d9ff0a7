"""Auto Deploy declarations (stackcascade extension): ``/api/orgs/{org}/autodeploy``.

``GET`` answers the org's declaration (its managed deployment edges and the gates of their stacks);
``PUT`` applies a declaration in one transaction, or with ``?dryRun=true`` only answers the diff.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import JSONResponse

from stackcascade.api.body import json_object
from stackcascade.api.deps import Caller, Ctx
from stackcascade.api.routing import RouteTable
from stackcascade.api.schemas import ERRORS, AutoDeployDocument, AutoDeployResult, body
from stackcascade.domain.errors import InvalidInput
from stackcascade.services import autodeploy

router = RouteTable(tags=["autodeploy"], responses=ERRORS)
PATH = "/api/orgs/{org}/autodeploy"
DryRun = Annotated[bool, Query(alias="dryRun", description="only answer the diff; nothing is changed")]


def _only_dry_run(request: Request) -> None:
    """A misspelled ``dryRun`` (``dry_run``, ``dryrun``) must not apply the document for real."""
    if len(request.query_params.getlist("dryRun")) > 1:
        raise InvalidInput("dryRun is given more than once: give it once, true or false")
    unknown = sorted(name for name in request.query_params if name != "dryRun")
    if unknown:
        raise InvalidInput(
            f"unknown query parameter {', '.join(map(repr, unknown))}: this endpoint takes only dryRun=true|false"
        )


@router.get(PATH, response_model=None, responses={200: {"model": AutoDeployDocument}})
async def get_autodeploy(ctx: Ctx, caller: Caller, org: str) -> JSONResponse:
    """The org's Auto Deploy declaration: applying it as it is changes nothing."""
    return JSONResponse(await autodeploy.show(ctx, caller, org))


@router.put(
    PATH,
    response_model=None,
    responses={200: {"model": AutoDeployResult}},
    openapi_extra=body(AutoDeployDocument),
    summary="Apply an Auto Deploy declaration (or, with dryRun=true, only show its diff)",
)
async def put_autodeploy(ctx: Ctx, caller: Caller, org: str, request: Request, dry_run: DryRun = False) -> JSONResponse:
    """Create, update and delete the managed deployment webhooks to match the declaration, atomically.

    Refused as a whole, with nothing changed, when it names a stack that does not exist (400), declares
    an edge an unmanaged webhook already carries, or would close a cycle with the unmanaged edges (409).
    """
    _only_dry_run(request)
    document = await json_object(request)
    return JSONResponse(await autodeploy.apply(ctx, caller, org, document, dry_run=dry_run))
