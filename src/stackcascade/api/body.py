"""Request bodies: size limits and JSON parsing with messages a person can act on."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stackcascade.api.errors import error_response
from stackcascade.domain.errors import InvalidInput, PayloadTooLarge


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await error_response(413, self._message())(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise PayloadTooLarge(self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"request body is larger than {self.limit} bytes (CASCADE_MAX_BODY_BYTES)"


async def json_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object. An empty body is ``{}`` unless the body is required."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise InvalidInput("the request needs a JSON object body")
        return {}
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidInput("the request body must be UTF-8 encoded JSON") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"malformed JSON in request body: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput(f"the request body must be a JSON object, not {type(value).__name__}")
    return value
