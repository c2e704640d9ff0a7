"""One error type for everything the user has to fix, reported as ``error: ...`` with exit code 1 (or its own)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

P = ParamSpec("P")
R = TypeVar("R")


class CliError(Exception):
    """A failure the user can act on: bad input, an API error, an unreachable server.

    The message is shown as is, so it must never contain a token or a secret value. ``exit_code``: the
    command's exit status (1; a subclass may say otherwise).
    """

    exit_code = 1

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; the caller raises the returned Exit(code)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a CliError raised by a command into a one-line message and its exit code (1), never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except CliError as exc:
            raise fail(exc.message, exc.exit_code) from None

    return wrapper
