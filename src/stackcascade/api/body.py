"""Request bodies: size limits and JSON parsing with messages a person can act on."""

from __future__ import annotations

import json
import math
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


class UrlGuard:
    """Refuse a NUL (``%00``) in the path or query with 400: no database column can hold it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")):
            await error_response(400, "the URL may not contain NUL characters (%00)")(scope, receive, send)
            return
        await self.app(scope, receive, send)


MAX_DEPTH = 64
_TOO_DEEP = f"the request body is nested too deeply (at most {MAX_DEPTH} levels)"


def _no_constants(name: str) -> object:
    raise InvalidInput(f"{name} is not valid JSON; send a finite number")


def _check_string(text: str) -> None:
    if "\x00" in text:
        raise InvalidInput("the request body may not contain NUL characters (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        raise InvalidInput(
            f"the request body contains an unpaired surrogate (\\u{code:04x}); send valid Unicode"
        ) from None


def _check_storable(value: object) -> None:
    """Refuse what no database or response can hold: NUL, lone surrogates, non-finite numbers, deep nesting."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list) and depth > MAX_DEPTH:
            raise InvalidInput(_TOO_DEEP)
        if isinstance(item, dict):
            for key, child in item.items():
                _check_string(key)
                pending.append((child, depth + 1))
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_string(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidInput("a number in the request body is out of range; send a finite number")


async def json_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object. An empty body is ``{}`` unless the body is required."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise InvalidInput("the request needs a JSON object body")
        return {}
    try:
        value = json.loads(raw, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise InvalidInput("the request body must be UTF-8 encoded JSON") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"malformed JSON in request body: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidInput(_TOO_DEEP) from None
    except ValueError:  # an integer longer than Python converts (sys.get_int_max_str_digits)
        raise InvalidInput("a number in the request body has too many digits") from None
    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        raise InvalidInput(f"the request body must be a JSON object, not {kind}")
    _check_storable(value)
    return value
