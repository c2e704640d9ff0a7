"""Failures read as one ``error:`` line with exit code 1; and the installed ``cascade`` executable works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx2
import typer.main
from typer.testing import CliRunner

from stackcascade.cli.main import app
from tests.cli.cli_support import Cascade, failed, ok
from tests.support import LiveServer, free_port


def test_an_unreachable_server_is_named_without_a_traceback(cascade: Cascade) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    stderr = failed(
        cascade.run("stack", "ls", "--server", nowhere, "--token", "csc_x"), f"could not reach the server at {nowhere}"
    )
    assert "refused" in stderr.lower()


def test_an_invalid_server_url_is_refused_before_connecting(cascade: Cascade) -> None:
    failed(
        cascade.run("stack", "ls", "--server", "localhost:8080", "--token", "csc_x"),
        "invalid server URL 'localhost:8080'",
    )


def test_without_a_token_the_error_says_where_to_put_one(cascade: Cascade, live_server: LiveServer) -> None:
    failed(
        cascade.run("stack", "ls", "--server", live_server.url),
        f"no token for {live_server.url}",
        "--token",
        "CASCADE_TOKEN",
    )


def test_a_bad_token_is_a_clean_401(cascade: Cascade) -> None:
    failed(cascade.as_token("csc_wrong", "stack", "ls"), "invalid or expired token (401)", "cascade login")


def test_a_missing_stack_is_a_clean_404(cascade: Cascade, org: str) -> None:
    failed(cascade.as_admin("deployments", "ls", f"{org}/net/none"), f"stack {org}/net/none not found (404)")


def test_a_broken_login_file_is_reported(cascade: Cascade, config_home: Path) -> None:
    path = config_home / "stackcascade" / "credentials.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    path.chmod(0o600)
    failed(cascade.run("stack", "ls"), f"{path} is not a valid credentials file")


def test_the_installed_executable_lists_stacks_as_json(
    live_server: LiveServer, org: str, admin: httpx2.Client, tmp_path: Path
) -> None:
    assert admin.post(f"/api/stacks/{org}/net", json={"stackName": "prod"}).status_code == 200
    executable = Path(sys.executable).parent / "cascade"
    assert executable.is_file(), f"{executable} is missing: pip install -e ."
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")},
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "CASCADE_API_URL": live_server.url,
        "CASCADE_TOKEN": live_server.admin_token,
        "CASCADE_ORG": org,
    }
    done = subprocess.run(
        [str(executable), "stack", "ls", "--json"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    listing = json.loads(done.stdout)
    assert [(s["orgName"], s["projectName"], s["stackName"]) for s in listing["stacks"]] == [(org, "net", "prod")]

    nowhere = f"http://127.0.0.1:{free_port()}"
    refused = subprocess.run(
        [str(executable), "stack", "ls", "--server", nowhere],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.startswith(f"error: could not reach the server at {nowhere}")
    assert "Traceback" not in refused.stderr


def test_help_lists_the_command_groups(cascade: Cascade) -> None:
    shown = ok(cascade.run("--help")).stdout
    for command in (
        "serve",
        "admin-token",
        "login",
        "logout",
        "stack",
        "settings",
        "deploy",
        "deployments",
        "cancel",
        "token",
    ):
        assert f" {command} " in shown


def _command_paths() -> list[tuple[str, ...]]:
    """Every command and group of ``cascade``, hidden ones too, as the words that run it."""
    paths: list[tuple[str, ...]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return paths


def test_no_help_shows_double_backticks_or_doubled_brackets() -> None:
    runner = CliRunner()
    paths = _command_paths()
    assert ("cascade", "list") in paths and ("autodeploy", "show") in paths  # the hidden alias is walked too
    for path in paths:
        shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert shown.exit_code == 0, (path, shown.output)
        assert "``" not in shown.output, (path, shown.output)
        assert "[[" not in shown.output, (path, shown.output)
    usage = runner.invoke(app, ["autodeploy", "show", "--help"], env={"COLUMNS": "200"}).output
    assert "Usage: cascade autodeploy show [OPTIONS] [FILE]" in usage
