"""Console forms are URL-encoded; parsed here so no multipart parser is needed."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request

from stackcascade.domain.errors import InvalidInput

_FORM_TYPES = {"", "application/x-www-form-urlencoded"}


class Form:
    """Submitted fields in order; a field may repeat (``getlist``)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def text(self, name: str) -> str:
        """The field stripped of surrounding blanks, or an empty string when absent."""
        return (self.get(name) or "").strip()

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key == name]

    def checked(self, name: str) -> bool:
        return self.get(name) is not None

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self._pairs)


async def read_form(request: Request) -> Form:
    cached: Form | None = getattr(request.state, "form", None)
    if cached is not None:
        return cached
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in _FORM_TYPES:
        raise InvalidInput(f"console forms are sent as application/x-www-form-urlencoded, not {kind}")
    body = await request.body()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=2000)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"the form could not be read: {exc}") from None
    if any("\x00" in key or "\x00" in value for key, value in pairs):
        raise InvalidInput("form fields may not contain NUL characters")
    form = Form(pairs)
    request.state.form = form
    return form
