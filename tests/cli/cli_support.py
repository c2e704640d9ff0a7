"""Helpers for CLI tests: run ``cascade`` in-process and check how it ended."""

from __future__ import annotations

import re

from typer.testing import CliRunner, Result

from stackcascade.cli.main import app
from tests.support import LiveServer


class Cascade:
    """Runs ``cascade ...`` in-process; ``as_token`` appends --server/--token as a user would."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.runner = CliRunner()

    def run(self, *args: str, input: str | None = None) -> Result:
        return self.runner.invoke(app, list(args), input=input)

    def as_token(self, token: str, *args: str, input: str | None = None) -> Result:
        return self.run(*args, "--server", self.server.url, "--token", token, input=input)

    def as_admin(self, *args: str, input: str | None = None) -> Result:
        return self.as_token(self.server.admin_token, *args, input=input)


def ok(result: Result) -> Result:
    """Assert the command succeeded, showing its output when it did not."""
    assert result.exit_code == 0, (
        f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
    )
    return result


def failed(result: Result, *fragments: str) -> str:
    """A clean failure: exit 1 through SystemExit (not a crash), ``error: ...`` on stderr with each fragment."""
    assert result.exit_code == 1, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert result.stdout == ""
    return result.stderr


def rows(result: Result) -> list[list[str]]:
    """stdout as lines of whitespace-separated cells (tables are not wrapped when piped)."""
    return [line.split() for line in result.stdout.splitlines() if line.strip()]


def details(result: Result) -> dict[str, str]:
    """Key/value output (``print_details``, ``settings get``) as a dict: keys and values are two or more spaces apart."""
    pairs = (re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in result.stdout.splitlines() if line.strip())
    return {pair[0]: pair[1].strip() if len(pair) > 1 else "" for pair in pairs}
