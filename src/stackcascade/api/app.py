"""The ASGI application: routes, error shapes, body limit and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from stackcascade import __version__
from stackcascade.api import errors
from stackcascade.api.body import BodyLimit, UrlGuard
from stackcascade.api.routes import (
    autodeploy,
    cascades,
    deployments,
    orgs,
    runner,
    runs,
    settings,
    stacks,
    tokens,
    webhooks,
)
from stackcascade.api.routing import RESPONSE_MODELS
from stackcascade.api.schemas import REQUEST_MODELS
from stackcascade.services.context import Context

DESCRIPTION = (
    "Pulumi Cloud-compatible REST API for stacks, deployment settings and deployments, with stackcascade "
    'extensions. Authenticate with `Authorization: token <token>`. Errors are `{"code": N, "message": "..."}`.'
)


def create_app(ctx: Context, *, max_body_bytes: int = 1024 * 1024) -> FastAPI:
    app = FastAPI(
        title="stackcascade",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.context = ctx
    errors.install(app)
    # Settings routes come first: their literal path segments must win over {deployment_id}.
    for router in (
        settings.router,
        runs.router,
        deployments.router,
        stacks.router,
        orgs.router,
        tokens.router,
        runner.router,
        webhooks.router,
        cascades.router,
        autodeploy.router,
    ):
        router.add_to(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        await ctx.db.ping()
        return JSONResponse({"status": "ok", "version": __version__})

    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(UrlGuard)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app


def openapi_document(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    documented = [(model, "serialization") for model in RESPONSE_MODELS.values()]
    documented += [(model, "validation") for model in REQUEST_MODELS]
    for model, mode in documented:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas.setdefault(model.__name__, schema)
    app.openapi_schema = document
    return document
