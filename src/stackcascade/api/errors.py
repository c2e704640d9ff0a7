"""Every error is ``{"code": N, "message": "..."}`` with a message that says what to fix."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from stackcascade.domain.errors import CascadeError
from stackcascade.store.db import is_transient_conflict

log = logging.getLogger("stackcascade.api")


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in {"query", "path", "body", "header"})
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return "invalid request: " + "; ".join(parts)


async def cascade_error(_request: Request, exc: CascadeError) -> JSONResponse:
    return error_response(exc.status_code, exc.message)


async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(400, _describe_validation(exc))


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    response = error_response(exc.status_code, message)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def database_error(request: Request, exc: sa.exc.DBAPIError) -> JSONResponse:
    """A transaction that lost to a concurrent one (a deadlock PostgreSQL broke, a serialization failure,
    SQLite's busy timeout) was rolled back whole: 503 with Retry-After, which runners and clients retry."""
    if not is_transient_conflict(exc):
        return await unexpected_error(request, exc)
    log.warning("%s on %s %s: answered 503", type(getattr(exc, "orig", exc)).__name__, request.method, request.url.path)
    response = error_response(
        503, "the request collided with another change written at the same moment and nothing was changed: retry it"
    )
    response.headers["Retry-After"] = "1"
    return response


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Never echo the exception: it may carry secrets. Log its type and where it happened.
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error; the server log has the details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(CascadeError, cascade_error)  # type: ignore[arg-type]
    app.add_exception_handler(sa.exc.DBAPIError, database_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected_error)
