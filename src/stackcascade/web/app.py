"""The whole ASGI application: the REST API with the console mounted beside it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from stackcascade.api.app import create_app
from stackcascade.services.context import Context
from stackcascade.web import errors, urls
from stackcascade.web.routes import auth, cascades, deployments, graph, live, overview, stacks, webhooks

STATIC_DIR = Path(__file__).parent / "static"


def build_app(ctx: Context, *, max_body_bytes: int = 1024 * 1024) -> FastAPI:
    app = create_app(ctx, max_body_bytes=max_body_bytes)
    app.mount(urls.STATIC, StaticFiles(directory=STATIC_DIR), name="static")
    # The API's routes were added first, so ``/api/...`` always wins over the console's ``/{org}/...``.
    # Org-level pages (``/{org}/~/...``) come before stack pages, which have the widest patterns.
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
        app.include_router(router, include_in_schema=False)
    errors.install(app)
    return app
