"""Name rules for organizations, projects and stacks (design section 2)."""

from __future__ import annotations

import re

from stackcascade.domain.errors import InvalidInput

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
RULE = "1-100 characters of letters, digits, '_', '.' or '-'"


def check_name(kind: str, value: object, *, may_start_with_dot: bool = False) -> str:
    """Return ``value`` if it is a valid name of ``kind``, else raise InvalidInput with the rule."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidInput(f"invalid {kind} name {value!r}: use {RULE}")
    if value in {".", ".."}:
        raise InvalidInput(f"invalid {kind} name {value!r}: '.' and '..' are path segments, not names")
    if not may_start_with_dot and value.startswith("."):
        raise InvalidInput(f"invalid {kind} name {value!r}: a {kind} name may not start with '.'")
    return value


def check_stack_ref(org: object, project: object, stack: object) -> tuple[str, str, str]:
    return (
        check_name("organization", org, may_start_with_dot=True),
        check_name("project", project),
        check_name("stack", stack),
    )
