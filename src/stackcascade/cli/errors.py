"""One error type for everything the user has to fix, reported as ``error: ...`` with exit code 1."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

P = ParamSpec("P")
R = TypeVar("R")


class CliError(Exception):
    """A failure the user can act on: bad input, an API error, an unreachable server.

    The message is shown as is, so it must never contain a token or a secret value.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; the caller raises the returned Exit(1)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a CliError raised by a command into a one-line message and exit code 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except CliError as exc:
            raise fail(exc.message) from None

    return wrapper
