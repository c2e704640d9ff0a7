"""The whole ASGI application: the REST API with the console mounted beside it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from stackcascade.api.app import create_app
from stackcascade.services.context import Context
from stackcascade.web import errors, urls

STATIC_DIR = Path(__file__).parent / "static"


def build_app(ctx: Context, *, max_body_bytes: int = 1024 * 1024, console_on_first_use: bool = True) -> FastAPI:
    """The API, and the console's pages, added now or (by default) when the first console path is asked for.

    Building the console's routes is a fifth of the server's start-up; a server that only ever
    answers runners and API clients never pays it, and the first page view pays it once (~0.2 s).
    """
    app = create_app(ctx, max_body_bytes=max_body_bytes)
    app.mount(urls.STATIC, StaticFiles(directory=STATIC_DIR), name="static")
    errors.install(app)
    if console_on_first_use:
        app.add_middleware(_AddConsoleOnFirstUse, fastapi_app=app)
    else:
        _add_console(app)
    return app


def _add_console(app: FastAPI) -> None:
    from stackcascade.web.routes import auth, cascades, deployments, graph, live, overview, stacks, webhooks

    # The API's routes were added first, so ``/api/...`` always wins over the console's ``/{org}/...``
    # (console routes do not match API paths at all). Org-level pages (``/{org}/~/...``) come before
    # stack pages, which have the widest patterns.
    for router in (
        auth.router,
        live.router,
        graph.router,
        cascades.router,
        webhooks.router,
        deployments.router,
        stacks.router,
        overview.router,
    ):
        router.add_to(app, include_in_schema=False)


class _AddConsoleOnFirstUse:
    """Adds the console's routes before the first request for a console path goes on to the router.

    Adding them is synchronous, so no other request runs while it happens, and every later request sees
    the same routes as if they had been there from the start.
    """

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self._app = app
        self._fastapi_app: FastAPI | None = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._fastapi_app is not None and scope["type"] == "http" and urls.is_console_path(scope["path"]):
            _add_console(self._fastapi_app)  # if it fails, the next console request tries again
            self._fastapi_app = None
        await self._app(scope, receive, send)
