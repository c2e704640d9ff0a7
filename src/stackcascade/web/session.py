"""Console sign-in: the API token lives in an HttpOnly, SameSite=Strict cookie; forms carry a CSRF token.

The CSRF token is derived from the session token (an HMAC), so it needs no storage, changes with every
sign-in, and says nothing about the token it came from.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from stackcascade.domain.errors import CascadeError, Forbidden
from stackcascade.domain.roles import Principal, TokenKind
from stackcascade.services import tokens
from stackcascade.services.context import Context
from stackcascade.web.forms import Form, read_form

SESSION_COOKIE = "cascade_session"
LOGIN_COOKIE = "cascade_login"  # pre-session CSRF for the sign-in form itself
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
_CSRF_KEY = b"stackcascade console csrf v1"


class SignInRequired(Exception):
    """No valid session: pages redirect to the sign-in form, live and fetch endpoints answer 401."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def csrf_for(token: str) -> str:
    return hmac.new(_CSRF_KEY, token.encode(), hashlib.sha256).hexdigest()


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def cookie_is_secure(request: Request) -> bool:
    """Secure cookies when the request came over TLS or the server is published over https (a proxy)."""
    public_url: str = request.app.state.context.public_url
    return request.url.scheme == "https" or public_url.startswith("https://")


async def authenticate_token(ctx: Context, token: str) -> Principal:
    """A principal that may use the console: admin and organization tokens, not runner or deployment ones."""
    principal = await tokens.authenticate(ctx, f"token {token}")
    if principal.kind not in (TokenKind.ADMIN, TokenKind.ORG):
        raise Forbidden(
            "runner and deployment tokens cannot sign in to the console: use an admin or organization token"
        )
    return principal


async def signed_in(request: Request) -> Principal:
    """The caller behind the session cookie; also leaves the CSRF token on ``request.state`` for forms."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired("sign in with an API token to continue")
    try:
        principal = await authenticate_token(request.app.state.context, token)
    except CascadeError as exc:
        raise SignInRequired(f"your session ended ({exc.message}); sign in again") from None
    request.state.principal = principal
    request.state.csrf = csrf_for(token)
    return principal


async def still_signed_in(request: Request) -> bool:
    """Whether the session's token still works, for a stream that outlives its first check: a revoked or
    expired token ends it (a revocation empties the auth cache, so this costs a lookup in it)."""
    try:
        await signed_in(request)
    except SignInRequired:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Submission:
    """A state-changing console request that passed the CSRF and origin checks."""

    principal: Principal
    form: Form


def check_origin(request: Request) -> None:
    """Refuse a cross-site POST outright when the browser says where it came from."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return
    parts = urlsplit(origin)
    if (parts.scheme, parts.netloc) != (request.url.scheme, request.url.netloc):
        raise Forbidden(f"cross-site request from {origin} refused")


async def submitted(request: Request, principal: Annotated[Principal, Depends(signed_in)]) -> Submission:
    check_origin(request)
    form = await read_form(request)
    sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD) or ""
    if not hmac.compare_digest(sent, request.state.csrf):
        raise Forbidden("the form's security token is missing or stale: reload the page and try again")
    return Submission(principal, form)


Viewer = Annotated[Principal, Depends(signed_in)]
Posted = Annotated[Submission, Depends(submitted)]
