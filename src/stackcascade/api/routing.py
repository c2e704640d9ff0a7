"""Route tables: routes declared next to their handlers, built once, when they are added to the app.

FastAPI builds a route (its dependency tree and a pydantic adapter per parameter) when it is declared
on an ``APIRouter``, and builds it again, on the first request, for every app the router is included
in. With about a hundred routes that is a third of the server's start-up, twice. A ``RouteTable`` only
records the declarations; ``add_to`` builds each route once, straight on the app's router, where it
matches exactly as an included route would (the same order, paths, tags, responses and dependencies).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI, params
from fastapi.routing import APIRoute
from pydantic import BaseModel

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

# Response models named in ``responses={code: {"model": M}}``, documented once in the OpenAPI document's
# components. FastAPI would build a pydantic adapter per route and status code for them (six error
# responses on each of sixty routes), only to render the document.
RESPONSE_MODELS: dict[str, type[BaseModel]] = {}


def _by_reference(response: dict[str, Any]) -> dict[str, Any]:
    """``response`` with its ``model`` replaced by a JSON reference to the model's component schema."""
    model = response.get("model")
    if model is None:
        return response
    documented = {key: value for key, value in response.items() if key != "model"}
    item = model.__args__[0] if getattr(model, "__origin__", None) is list else None
    target = item if item is not None else model
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise TypeError(f"response model {model!r} must be a pydantic model or a list of one")
    RESPONSE_MODELS[target.__name__] = target
    schema: dict[str, Any] = {"$ref": f"#/components/schemas/{target.__name__}"}
    if item is not None:
        schema = {"type": "array", "items": schema}
    documented.setdefault("content", {}).setdefault("application/json", {})["schema"] = schema
    return documented


@dataclass(frozen=True)
class _Declared:
    path: str
    endpoint: Callable[..., Any]
    options: dict[str, Any]


@dataclass
class RouteTable:
    """The part of ``APIRouter``'s declaration interface the routes use, without building anything."""

    prefix: str = ""
    tags: Sequence[str] = ()
    responses: dict[int | str, dict[str, Any]] = field(default_factory=dict)
    dependencies: Sequence[params.Depends] = ()
    default_response_class: type[Any] | None = None
    route_class: type[APIRoute] = APIRoute
    declared: list[_Declared] = field(default_factory=list)

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        self.declared.append(_Declared(self.prefix + path, endpoint, options))

    def api_route(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        def declare(endpoint: Endpoint) -> Endpoint:
            self.add_api_route(path, endpoint, **options)
            return endpoint

        return declare

    def get(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(path, methods=["GET"], **options)

    def head(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(path, methods=["HEAD"], **options)

    def post(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(path, methods=["POST"], **options)

    def put(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(path, methods=["PUT"], **options)

    def patch(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(path, methods=["PATCH"], **options)

    def delete(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(path, methods=["DELETE"], **options)

    def add_to(self, app: FastAPI, *, include_in_schema: bool = True) -> None:
        """Build every declared route on ``app``, in declaration order, with the table's defaults."""
        for route in self.declared:
            options = dict(route.options)
            options["tags"] = [*self.tags, *options.get("tags", ())]
            responses = {**self.responses, **options.get("responses", {})}
            options["responses"] = {code: _by_reference(response) for code, response in responses.items()}
            options["dependencies"] = [*self.dependencies, *options.get("dependencies", ())]
            options["include_in_schema"] = include_in_schema and options.get("include_in_schema", True)
            if self.default_response_class is not None:
                options.setdefault("response_class", self.default_response_class)
            app.router.add_api_route(route.path, route.endpoint, route_class_override=self.route_class, **options)
