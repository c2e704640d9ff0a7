"""Sign in with an API token, sign out, and the home page listing the organizations a token sees."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stackcascade.domain.errors import CascadeError
from stackcascade.services import overview
from stackcascade.services.context import Context
from stackcascade.web import urls
from stackcascade.web.forms import read_form
from stackcascade.web.pages import redirect, render
from stackcascade.web.routing import console_router
from stackcascade.web.session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Posted,
    Viewer,
    authenticate_token,
    check_origin,
    cookie_is_secure,
    new_login_nonce,
)

router = console_router()


def _safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect after sign-in would hand the session to a phishing page."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")) and "\n" not in target:
        return target
    return urls.home()


def _login_form(request: Request, *, next_url: str, error: str | None = None, status: int = 200) -> HTMLResponse:
    nonce = new_login_nonce()
    response = render(request, "login.html", status=status, next_url=next_url, error=error, login_nonce=nonce)
    response.set_cookie(
        LOGIN_COOKIE, nonce, httponly=True, samesite="strict", secure=cookie_is_secure(request), path="/~/login"
    )
    return response


@router.get("/~/login")
async def sign_in_form(request: Request, next: Annotated[str | None, Query()] = None) -> HTMLResponse:
    return _login_form(request, next_url=_safe_next(next))


@router.post("/~/login")
async def sign_in(request: Request) -> Response:
    check_origin(request)
    form = await read_form(request)
    next_url = _safe_next(form.get("next"))
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not hmac.compare_digest(nonce, form.text("login_nonce")):
        return _login_form(request, next_url=next_url, error="The sign-in form expired: try again.", status=403)
    token = form.text("token")
    if not token:
        return _login_form(request, next_url=next_url, error="Paste an API token to sign in.", status=400)
    ctx: Context = request.app.state.context
    try:
        await authenticate_token(ctx, token)
    except CascadeError as exc:
        message = "That token is not valid (or has expired)." if exc.status_code == 401 else exc.message
        return _login_form(request, next_url=next_url, error=message, status=401)
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=cookie_is_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/~/login")
    return response


@router.post("/~/logout")
async def sign_out(_submission: Posted) -> Response:
    response = redirect(urls.sign_in(), flash="Signed out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
async def home(request: Request, principal: Viewer) -> Response:
    orgs = await overview.visible_orgs(request.app.state.context, principal)
    if len(orgs) == 1:
        return RedirectResponse(urls.org(orgs[0]), status_code=303)
    return render(request, "home.html", orgs=orgs)
