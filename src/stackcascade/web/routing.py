"""Console routes: they never match ``/api`` paths, which the API answers (in JSON) or not at all."""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from stackcascade.api.routing import RouteTable
from stackcascade.web.urls import is_console_path


class ConsoleRoute(APIRoute):
    """A console route that does not even partly match API paths.

    A partial match (right path, other method) would turn the API's 404 for an unknown ``/api/...``
    path into a 405, and whether it did would depend on whether the console had been opened yet.
    """

    def matches(self, scope: Scope) -> tuple[Match, dict[str, Any]]:
        if scope["type"] == "http" and not is_console_path(scope["path"]):
            return Match.NONE, {}
        return super().matches(scope)


def console_router() -> RouteTable:
    return RouteTable(route_class=ConsoleRoute, default_response_class=HTMLResponse)
