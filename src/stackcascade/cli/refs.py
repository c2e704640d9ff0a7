"""Pure parsing of command-line values: stack references and ``KEY=VALUE`` pairs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stackcascade.cli.errors import CliError
from stackcascade.domain.errors import InvalidInput
from stackcascade.domain.names import check_stack_ref


@dataclass(frozen=True, slots=True)
class StackRef:
    org: str
    project: str
    stack: str

    def __str__(self) -> str:
        return f"{self.org}/{self.project}/{self.stack}"


def parse_stack_ref(text: str, default_org: str | None) -> StackRef:
    """``org/project/stack``, or ``project/stack`` in the default org; names checked by the server's own rules."""
    parts = text.split("/")
    if len(parts) == 2:
        if not default_org:
            raise CliError(
                f"stack {text!r} has no organization: write org/project/stack, "
                "or set a default with --org, CASCADE_ORG or `cascade login --org`"
            )
        parts = [default_org, *parts]
    if len(parts) != 3 or not all(parts):
        raise CliError(f"invalid stack {text!r}: write org/project/stack (or project/stack with a default org)")
    if any(part in {".", ".."} for part in parts):
        raise CliError(f"invalid stack {text!r}: '.' and '..' are not names")
    try:
        org, project, stack = check_stack_ref(*parts)
    except InvalidInput as exc:
        raise CliError(exc.message) from None
    return StackRef(org, project, stack)


def parse_pairs(values: Iterable[str], option: str, *, secret: bool = False) -> dict[str, str]:
    """``KEY=VALUE`` items (split at the first ``=``) to a dict; a key given twice is an error, not a silent override.

    With ``secret`` a malformed item is not echoed: it may be the secret typed without its key.
    """
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            shown = "a value without a KEY= prefix" if secret else repr(item)
            raise CliError(f"{option} expects KEY=VALUE, got {shown}")
        if key in pairs:
            raise CliError(f"{option} {key} is given twice")
        pairs[key] = value
    return pairs
