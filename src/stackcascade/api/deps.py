"""Dependencies shared by the routes: the services context and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from stackcascade.domain.roles import Principal
from stackcascade.services import tokens
from stackcascade.services.context import Context

_auth_header = APIKeyHeader(
    name="Authorization", auto_error=False, description="`token <your token>` (Pulumi Cloud style)"
)


async def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.context
    return ctx


async def get_principal(request: Request, authorization: Annotated[str | None, Depends(_auth_header)]) -> Principal:
    return await tokens.authenticate(request.app.state.context, authorization)


Ctx = Annotated[Context, Depends(get_context)]
Caller = Annotated[Principal, Depends(get_principal)]
