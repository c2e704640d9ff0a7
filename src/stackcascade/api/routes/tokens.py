"""API tokens (stackcascade extension): ``/api/tokens``."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from stackcascade.api.body import json_object
from stackcascade.api.deps import Caller, Ctx
from stackcascade.api.routing import RouteTable
from stackcascade.api.schemas import ERRORS, TokenCreated, TokenCreateRequest, TokenList, body
from stackcascade.domain.errors import InvalidInput
from stackcascade.services import tokens

router = RouteTable(tags=["tokens"], responses=ERRORS)


@router.post(
    "/api/tokens",
    status_code=201,
    response_model=None,
    responses={201: {"model": TokenCreated}},
    openapi_extra=body(TokenCreateRequest),
)
async def create_token(ctx: Ctx, caller: Caller, request: Request) -> JSONResponse:
    raw = await json_object(request, required=False)
    for key in ("org", "role", "name"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise InvalidInput(f"'{key}' must be a string")
    if raw.get("runner") is not None and not isinstance(raw["runner"], bool):
        raise InvalidInput("'runner' must be true or false")
    issued = await tokens.create(
        ctx, caller, org=raw.get("org"), role=raw.get("role"), name=raw.get("name"), runner=bool(raw.get("runner"))
    )
    return JSONResponse(
        {
            "id": issued.id,
            "token": issued.value,
            "name": issued.name,
            "kind": issued.kind.value,
            "org": issued.org,
            "role": issued.role.value if issued.role else None,
        },
        status_code=201,
    )


@router.get("/api/tokens", response_model=None, responses={200: {"model": TokenList}})
async def list_tokens(ctx: Ctx, caller: Caller) -> JSONResponse:
    return JSONResponse({"tokens": await tokens.list_visible(ctx, caller)})


@router.delete("/api/tokens/{token_id}", status_code=204)
async def revoke_token(ctx: Ctx, caller: Caller, token_id: str) -> Response:
    await tokens.revoke(ctx, caller, token_id)
    return Response(status_code=204)
