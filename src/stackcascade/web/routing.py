"""Console routers: never answer for ``/api`` paths, which the API answers (in JSON) or not at all."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


async def _not_api(request: Request) -> None:
    if request.url.path == "/api" or request.url.path.startswith(("/api/", "/healthz")):
        raise StarletteHTTPException(404)


def console_router() -> APIRouter:
    return APIRouter(dependencies=[Depends(_not_api)], default_response_class=HTMLResponse)
