"""Route tables: declared routes are built once on the app, with the table's defaults and documented models."""

from __future__ import annotations

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from stackcascade.api.routing import RESPONSE_MODELS, RouteTable


class Thing(BaseModel):
    name: str


class Problem(BaseModel):
    code: int


def _table() -> RouteTable:
    table = RouteTable(
        prefix="/api/things", tags=["things"], responses={404: {"model": Problem, "description": "gone"}}
    )

    @table.get("/{name}", responses={200: {"model": Thing}})
    async def get_thing(name: str) -> JSONResponse:
        return JSONResponse({"name": name})

    @table.get("", tags=["lists"], responses={200: {"model": list[Thing]}})
    async def list_things() -> JSONResponse:
        return JSONResponse([])

    return table


def test_declaring_routes_builds_nothing_until_they_are_added() -> None:
    table = _table()
    app = FastAPI()
    before = len(app.routes)
    assert [route.path for route in table.declared] == ["/api/things/{name}", "/api/things"]
    table.add_to(app)
    added = [route for route in app.routes[before:] if isinstance(route, APIRoute)]
    assert [(route.path, route.methods) for route in added] == [
        ("/api/things/{name}", {"GET"}),
        ("/api/things", {"GET"}),
    ]
    assert added[1].tags == ["things", "lists"]


async def test_added_routes_answer_like_router_routes() -> None:
    app = FastAPI()
    _table().add_to(app)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get("/api/things/lamp")).json() == {"name": "lamp"}
        assert (await client.post("/api/things/lamp")).status_code == 405


def test_response_models_are_documented_by_reference_once() -> None:
    app = FastAPI()
    _table().add_to(app)
    document = app.openapi()
    one = document["paths"]["/api/things/{name}"]["get"]["responses"]
    assert one["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Thing"}
    assert one["404"] == {
        "description": "gone",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    listed = document["paths"]["/api/things"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed == {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}}
    assert RESPONSE_MODELS["Thing"] is Thing and RESPONSE_MODELS["Problem"] is Problem


def test_a_response_model_that_is_not_a_pydantic_model_is_refused() -> None:
    table = RouteTable()

    @table.get("/odd", responses={200: {"model": dict}})
    async def odd() -> JSONResponse:
        return JSONResponse({})

    with pytest.raises(TypeError, match="pydantic model"):
        table.add_to(FastAPI())


def test_the_tables_default_response_class_applies_unless_a_route_names_its_own() -> None:
    table = RouteTable(default_response_class=PlainTextResponse)

    @table.get("/plain")
    async def plain() -> str:
        return "plain"

    @table.get("/json", response_class=JSONResponse)
    async def json() -> dict[str, str]:
        return {}

    app = FastAPI()
    table.add_to(app, include_in_schema=False)
    routes = {route.path: route for route in app.routes if isinstance(route, APIRoute)}
    assert routes["/plain"].response_class is PlainTextResponse
    assert routes["/json"].response_class is JSONResponse
    assert not routes["/plain"].include_in_schema
