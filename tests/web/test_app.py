"""The console's routes are added on the first console request; API paths never reach them."""

from __future__ import annotations

import httpx2
from fastapi.routing import APIRoute

from stackcascade.services import tokens
from stackcascade.services.context import Context
from stackcascade.web.app import build_app
from stackcascade.web.routing import ConsoleRoute

ADMIN = "csc_test_console_first_use"


def _console_routes(app: object) -> list[APIRoute]:
    return [route for route in app.routes if isinstance(route, ConsoleRoute)]  # type: ignore[attr-defined]


async def test_api_requests_do_not_add_the_console_and_the_first_page_does(ctx: Context) -> None:
    await tokens.ensure_admin(ctx, ADMIN)
    app = build_app(ctx)
    headers = {"Authorization": f"token {ADMIN}"}
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/api/user/stacks", headers=headers)).status_code == 200
        assert _console_routes(app) == []
        page = await client.get("/~/login")
        assert page.status_code == 200 and "<form" in page.text
        added = len(_console_routes(app))
        assert added > 30
        assert (await client.get("/~/login")).status_code == 200
        assert len(_console_routes(app)) == added  # added once


async def test_api_answers_are_the_same_before_and_after_the_console_is_added(ctx: Context) -> None:
    await tokens.ensure_admin(ctx, ADMIN)
    app = build_app(ctx)
    headers = {"Authorization": f"token {ADMIN}"}
    # Paths shaped like console pages: with a partial match on a console route, these would be 405s.
    probes = [("PUT", "/api/a/b"), ("DELETE", "/api/a/b/c"), ("POST", "/api/a"), ("GET", "/api/a/~/graph")]
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as client:
        before = [(r.status_code, r.json()) for r in [await client.request(m, p, headers=headers) for m, p in probes]]
        await client.get("/~/login")
        assert _console_routes(app)
        after = [(r.status_code, r.json()) for r in [await client.request(m, p, headers=headers) for m, p in probes]]
    assert before == after
    assert {status for status, _ in after} == {404}
    assert all(set(body) == {"code", "message"} for _, body in after)


async def test_the_console_can_be_added_up_front(ctx: Context) -> None:
    app = build_app(ctx, console_on_first_use=False)
    assert len(_console_routes(app)) > 30
