"""Session cookie details that need a server published over https (in process, through ASGI)."""

from __future__ import annotations

import dataclasses

import httpx2

from stackcascade.services import tokens
from stackcascade.services.context import Context
from stackcascade.web.app import build_app
from stackcascade.web.session import csrf_for


async def test_behind_an_https_url_the_session_cookie_is_secure(ctx: Context) -> None:
    published = dataclasses.replace(ctx, public_url="https://cascade.example")
    await tokens.ensure_admin(published, "csc_test_https_admin")
    transport = httpx2.ASGITransport(app=build_app(published))
    async with httpx2.AsyncClient(transport=transport, base_url="http://internal") as client:
        form = await client.get("/~/login")
        assert "Secure" in form.headers["set-cookie"]  # the sign-in nonce too
        nonce = form.text.split('name="login_nonce" value="', 1)[1].split('"', 1)[0]
        # A client keeps Secure cookies for https only; this one talks plain HTTP to the app, so send it.
        client.cookies.clear()
        response = await client.post(
            "/~/login",
            data={"token": "csc_test_https_admin", "login_nonce": nonce, "next": "/"},
            headers={"cookie": f"cascade_login={nonce}"},
        )
    assert response.status_code == 303
    session = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and "cascade_session=" in v)
    assert "Secure" in session and "HttpOnly" in session


def test_the_csrf_token_depends_on_the_session_and_does_not_reveal_it() -> None:
    first, second = csrf_for("csc_one"), csrf_for("csc_two")
    assert first != second and len(first) == 64
    assert "csc_one" not in first
    assert csrf_for("csc_one") == first  # stable for a session, so every tab's forms stay valid
