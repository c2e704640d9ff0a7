"""Errors on console pages are pages (with the same message the API would give); API paths keep JSON."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from stackcascade.api import errors as api_errors
from stackcascade.domain.errors import CascadeError
from stackcascade.web import urls
from stackcascade.web.pages import render
from stackcascade.web.session import SignInRequired


def is_console(request: Request) -> bool:
    return urls.is_console_path(request.url.path)


def wants_page(request: Request) -> bool:
    """Scripts (live streams, fragment fetches) get a short text answer, browsers navigating get a page."""
    return request.headers.get("x-requested-with") != "console" and "text/event-stream" not in request.headers.get(
        "accept", ""
    )


def error_page(request: Request, status: int, message: str) -> Response:
    if not wants_page(request):
        return JSONResponse({"code": status, "message": message}, status_code=status)
    titles = {400: "That did not work", 403: "Not allowed", 404: "Not found", 409: "Not now", 413: "Too large"}
    return render(request, "error.html", status=status, title=titles.get(status, "Error"), message=message, code=status)


async def _cascade_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CascadeError)
    if not is_console(request):
        return await api_errors.cascade_error(request, exc)
    return error_page(request, exc.status_code, exc.message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not is_console(request):
        return await api_errors.http_error(request, exc)
    if exc.status_code == 404:
        return error_page(request, 404, f"there is no page at {request.url.path}")
    if exc.status_code == 405:
        return error_page(request, 405, f"{request.method} is not used on {request.url.path}")
    return error_page(request, exc.status_code, str(exc.detail))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not is_console(request):
        return await api_errors.validation_error(request, exc)
    return error_page(request, 400, "the address has a value this page cannot use; check the link")


async def _sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    if not wants_page(request):
        return JSONResponse({"code": 401, "message": exc.reason}, status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(urls.sign_in(target if request.method == "GET" else None), status_code=303)


def install(app: FastAPI) -> None:
    app.add_exception_handler(CascadeError, _cascade_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(SignInRequired, _sign_in)
