"""Auto Deploy declarations (stackcascade extension): ``/api/orgs/{org}/autodeploy``.

``GET`` answers the org's declaration (its managed deployment edges and the gates of their stacks);
``PUT`` applies a declaration in one transaction, or with ``?dryRun=true`` only answers the diff.
``GET`` and a dry run answer an ``ETag`` naming the declaration they read; a ``PUT`` with that
``If-Match`` is refused (412) if the declaration changed since.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Query, Request
from fastapi.responses import JSONResponse

from stackcascade.api.body import json_object
from stackcascade.api.deps import Caller, Ctx
from stackcascade.api.routing import RouteTable
from stackcascade.api.schemas import ERRORS, AutoDeployDocument, AutoDeployResult, ErrorResponse, body
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


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="the ETag of a GET or a dry run: apply only if the declaration is still the one it named",
    ),
]


def _etag(basis: str) -> dict[str, str]:
    return {"ETag": f'"{basis}"'}


def _basis_of(if_match: str | None) -> str | None:
    """The basis an ``If-Match`` names; None for none or ``*`` (any)."""
    if if_match is None or if_match.strip() == "*":
        return None
    tags = [tag.strip() for tag in if_match.split(",") if tag.strip()]
    if len(tags) != 1 or tags[0].startswith("W/") or len(tags[0]) < 2 or not tags[0][0] == tags[0][-1] == '"':
        raise InvalidInput('If-Match must be one ETag as answered by GET or a dry run, quoted: "..." (or *)')
    return tags[0][1:-1]


@router.get(PATH, response_model=None, responses={200: {"model": AutoDeployDocument}})
async def get_autodeploy(ctx: Ctx, caller: Caller, org: str) -> JSONResponse:
    """The org's Auto Deploy declaration: applying it as it is changes nothing."""
    document, basis = await autodeploy.show(ctx, caller, org)
    return JSONResponse(document, headers=_etag(basis))


@router.put(
    PATH,
    response_model=None,
    responses={
        200: {"model": AutoDeployResult},
        412: {"model": ErrorResponse, "description": "If-Match names a declaration that has changed since"},
    },
    openapi_extra=body(AutoDeployDocument),
    summary="Apply an Auto Deploy declaration (or, with dryRun=true, only show its diff)",
)
async def put_autodeploy(
    ctx: Ctx, caller: Caller, org: str, request: Request, dry_run: DryRun = False, if_match: IfMatch = None
) -> JSONResponse:
    """Create, update and delete the managed deployment webhooks to match the declaration, atomically.

    Refused as a whole, with nothing changed, when it names a stack that does not exist (400), declares
    an edge an unmanaged webhook already carries, or would close a cycle with the unmanaged edges (409),
    or when ``If-Match`` names a declaration that has changed since (412).
    """
    _only_dry_run(request)
    expected = _basis_of(if_match)
    document = await json_object(request)
    result, basis = await autodeploy.apply(ctx, caller, org, document, dry_run=dry_run, if_basis=expected)
    return JSONResponse(result, headers=_etag(basis) if dry_run else None)
