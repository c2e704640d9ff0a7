"""Login, logout, and where every command finds its server, token and default org."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx2
import pytest

from tests.cli.cli_support import Cascade, failed, ok
from tests.support import LiveServer, free_port


def credentials_file(config_home: Path) -> Path:
    return config_home / "stackcascade" / "credentials.json"


def test_login_saves_a_private_file_that_later_commands_use(
    cascade: Cascade, config_home: Path, org: str, admin: httpx2.Client
) -> None:
    result = ok(cascade.as_admin("login", "--org", org))
    assert cascade.server.admin_token not in result.output

    path = credentials_file(config_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {
        "server": cascade.server.url,
        "token": cascade.server.admin_token,
        "org": org,
    }

    ok(cascade.run("stack", "create", "net/prod"))  # no --server, --token or org: all from the file
    assert admin.get(f"/api/stacks/{org}/net/prod").status_code == 200


def test_login_with_a_bad_token_saves_nothing(cascade: Cascade, config_home: Path) -> None:
    failed(cascade.as_token("csc_not_a_real_token", "login"), "invalid or expired token (401)")
    assert not credentials_file(config_home).exists()


def test_login_reads_the_token_from_a_hidden_prompt(cascade: Cascade, config_home: Path) -> None:
    token = cascade.server.admin_token
    result = ok(cascade.run("login", "--server", cascade.server.url, input=token + "\n"))
    assert token not in result.output
    assert json.loads(credentials_file(config_home).read_text())["token"] == token


def test_logout_removes_the_file_and_commands_then_ask_for_a_server(cascade: Cascade, config_home: Path) -> None:
    ok(cascade.as_admin("login"))
    assert "Logged out" in ok(cascade.run("logout")).stdout
    assert not credentials_file(config_home).exists()
    failed(cascade.run("stack", "ls"), "no server given", "CASCADE_API_URL", "cascade login")
    assert "Not logged in" in ok(cascade.run("logout")).stdout


def test_environment_overrides_the_login_file(
    cascade: Cascade, org: str, admin: httpx2.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(cascade.as_admin("login", "--org", "some-other-org"))
    viewer = admin.post("/api/tokens", json={"org": org, "role": "viewer"}).json()["token"]

    monkeypatch.setenv("CASCADE_ORG", org)
    monkeypatch.setenv("CASCADE_TOKEN", viewer)
    failed(cascade.run("stack", "create", "net/prod"), f"role viewer in organization '{org}'", "(403)")

    monkeypatch.delenv("CASCADE_TOKEN")
    ok(cascade.run("stack", "create", "net/prod"))  # the admin token from the file, the org from CASCADE_ORG
    assert admin.get(f"/api/stacks/{org}/net/prod").status_code == 200

    unreachable = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("CASCADE_API_URL", unreachable)
    monkeypatch.setenv("CASCADE_TOKEN", viewer)
    failed(cascade.run("stack", "ls"), f"could not reach the server at {unreachable}")


def test_options_override_the_environment(cascade: Cascade, org: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("CASCADE_TOKEN", "csc_wrong")
    monkeypatch.setenv("CASCADE_ORG", "wrong-org")
    ok(cascade.as_admin("stack", "create", "net/prod", "--org", org))
    listing = json.loads(ok(cascade.as_admin("stack", "ls", "--org", org, "--json")).stdout)
    assert [s["stackName"] for s in listing["stacks"]] == ["prod"]


def test_the_saved_token_is_never_sent_to_another_server(cascade: Cascade, live_server: LiveServer) -> None:
    ok(cascade.as_admin("login"))
    other = f"http://127.0.0.1:{free_port()}"
    failed(
        cascade.run("stack", "ls", "--server", other), f"no token for {other}", f"saved login is for {live_server.url}"
    )


def test_a_login_file_readable_by_others_is_still_used_but_warned_about(
    cascade: Cascade, config_home: Path, org: str
) -> None:
    ok(cascade.as_admin("login", "--org", org))
    path = credentials_file(config_home)
    path.chmod(0o644)
    result = ok(cascade.run("stack", "ls", "--json"))
    assert result.stderr == f"warning: {path} is readable by other users; run: chmod 600 {path}\n"
    assert json.loads(result.stdout) == {"stacks": []}


def test_login_again_replaces_the_file_and_tightens_its_directory(cascade: Cascade, config_home: Path) -> None:
    (config_home / "stackcascade").mkdir(parents=True, mode=0o755)
    ok(cascade.as_admin("login", "--org", "first"))
    ok(cascade.as_admin("login"))
    path = credentials_file(config_home)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert "org" not in json.loads(path.read_text())
    assert [p.name for p in path.parent.iterdir()] == ["credentials.json"]  # no temporary file left behind
