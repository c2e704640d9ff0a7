"""``cascade serve`` as a real process: bootstrap, demo, restart and clean shutdown, on both databases."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from tests.e2e.helpers import wait_for
from tests.support import free_port

CASCADE = Path(sys.executable).parent / "cascade"
TOKEN_LINE = re.compile(r"^\s+(csc_\S+)$", re.MULTILINE)


class Served:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.banner = ""

    def client(self, token: str) -> httpx2.Client:
        return httpx2.Client(base_url=self.url, headers={"Authorization": f"token {token}"}, timeout=10)


def _wait_until_up(served: Served, deadline: float) -> None:
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise AssertionError(
                f"cascade serve exited early: {served.process.stdout.read() if served.process.stdout else ''}"
            )
        try:
            if httpx2.get(served.url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            time.sleep(0.05)
    raise AssertionError("cascade serve did not answer /healthz in time")


def _database_options(data_dir: Path, database_url: str) -> list[str]:
    options = ["--data-dir", str(data_dir)]
    if database_url.startswith("postgresql"):
        options += ["--database-url", database_url]
    return options


def _command(data_dir: Path, database_url: str, port: int, *args: str, command_name: str = "serve") -> list[str]:
    return [str(CASCADE), command_name, *_database_options(data_dir, database_url), "--port", str(port), *args]


def _environment(env: dict[str, str] | None = None) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")} | (env or {})


@contextmanager
def serve(
    data_dir: Path,
    database_url: str,
    *args: str,
    env: dict[str, str] | None = None,
    command_name: str = "serve",
    relative_to: Path | None = None,
) -> Iterator[Served]:
    """``cascade serve`` (or ``command_name``) on a free port; with ``relative_to``, run from that
    directory and name the data dir relative to it, as ``make run`` does (``.cascade``)."""
    port = free_port()
    where = data_dir if relative_to is None else data_dir.relative_to(relative_to)
    process = subprocess.Popen(
        _command(where, database_url, port, *args, command_name=command_name),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_environment(env),
        cwd=relative_to,
    )
    served = Served(process, f"http://127.0.0.1:{port}")
    try:
        _wait_until_up(served, time.monotonic() + 30)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        served.banner = output


def test_first_start_prints_a_working_admin_token_once_and_restarts_keep_it(database_url: str, tmp_path: Path) -> None:
    with serve(tmp_path, database_url) as first:
        pass
    tokens = TOKEN_LINE.findall(first.banner)
    assert len(tokens) == 1, first.banner
    assert first.process.returncode == 0, "SIGTERM is a clean shutdown"
    assert "stackcascade stopped" in first.banner
    key = tmp_path / "secret.key"
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
    with serve(tmp_path, database_url) as second, second.client(tokens[0]) as api:
        assert api.get("/api/tokens").status_code == 200
    assert TOKEN_LINE.findall(second.banner) == [], "the token is printed once, at the first start only"
    assert tokens[0] not in second.banner


def test_a_port_in_use_fails_the_start_without_using_up_the_first_admin_token(
    database_url: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = subprocess.run(
            _command(tmp_path, database_url, port, "--runners", "0"),
            capture_output=True,
            text=True,
            env=_environment(),
            timeout=60,
            check=False,
        )
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output
    assert "address already in use" in output, output
    assert "listening on" not in output, "it never listened"
    assert TOKEN_LINE.findall(output) == [], "no token is shown for a server nobody can reach"
    with serve(tmp_path, database_url) as first:
        pass
    tokens = TOKEN_LINE.findall(first.banner)
    assert len(tokens) == 1, f"the first start that listens shows the first admin token:\n{first.banner}"
    assert first.banner.index("listening on") < first.banner.index(tokens[0])
    with serve(tmp_path, database_url) as second, second.client(tokens[0]) as api:
        assert api.get("/api/tokens").status_code == 200


def test_configured_admin_token_is_accepted(database_url: str, tmp_path: Path) -> None:
    configured = "csc_configured_" + "x" * 20
    with (
        serve(tmp_path, database_url, env={"CASCADE_ADMIN_TOKEN": configured}) as served,
        served.client(configured) as api,
    ):
        assert api.get("/api/tokens").status_code == 200
        with served.client("csc_wrong") as wrong:
            assert wrong.get("/api/tokens").status_code == 401
    assert TOKEN_LINE.findall(served.banner) == []


def test_demo_seeds_the_diamond_stacks_with_settings_from_a_real_git_repository(
    database_url: str, tmp_path: Path
) -> None:
    token = "csc_demo_" + "y" * 20
    data_dir = tmp_path / ".cascade"  # relative, as `make run` gives it: the steps must still find their files
    with (
        serve(
            data_dir, database_url, env={"CASCADE_ADMIN_TOKEN": token}, command_name="demo", relative_to=tmp_path
        ) as served,
        served.client(token) as api,
    ):
        stacks = api.get("/api/user/stacks", params={"organization": "demo"}).json()["stacks"]
        assert sorted(s["projectName"] for s in stacks) == ["app", "cluster", "database", "network"]
        settings = api.get("/api/stacks/demo/network/prod/deployments/settings").json()
        repo_url = settings["sourceContext"]["git"]["repoUrl"]
        # One deployment of network, from the CLI, cascades through the diamond: each layer once.
        queued = subprocess.run(
            [str(CASCADE), "deploy", "demo/network/prod", "--server", served.url, "--token", token, "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        root = wait_for(api, "demo/network/prod", json.loads(queued.stdout)["id"])
        assert root["status"] == "succeeded", root.get("reason")
        cascade_id = api.get(f"/api/stacks/demo/network/prod/deployments/{root['id']}").json()["cascadeId"]
        cascade = wait_for_cascade(api, "demo", cascade_id)
        assert cascade["status"] == "succeeded", cascade
        assert cascade["waves"] == [["network/prod"], ["cluster/prod", "database/prod"], ["app/prod"]]
        assert {m["stack"]: (m["status"], m["version"]) for m in cascade["members"]} == {
            f"{layer}/prod": ("succeeded", 1) for layer in ("network", "database", "cluster", "app")
        }
        app = api.get("/api/stacks/demo/app/prod/outputs").json()["outputs"]
        assert app["database"].startswith("db.vpc-") and app["cluster"].startswith("https://k8s.vpc-")
        assert api.get("/api/stacks/demo/database/prod/outputs").json()["outputs"]["password"] == "[secret]"
    repo = Path(repo_url.removeprefix("file://"))
    log = subprocess.run(["git", "-C", str(repo), "log", "--oneline"], capture_output=True, text=True, check=True)
    assert "demo projects" in log.stdout
    assert (repo / "network" / "Cascade.yaml").read_text().startswith("#")
    # A second demo start leaves the seeded stacks alone.
    with (
        serve(data_dir, database_url, "--demo", env={"CASCADE_ADMIN_TOKEN": token}) as again,
        again.client(token) as api,
    ):
        assert len(api.get("/api/user/stacks", params={"organization": "demo"}).json()["stacks"]) == 4
    assert "already there" in again.banner


def _admin_token(data_dir: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    command = [str(CASCADE), "admin-token", *_database_options(data_dir, database_url)]
    return subprocess.run(command, capture_output=True, text=True, env=_environment(), timeout=60, check=False)


def test_admin_token_mints_into_the_servers_database_and_refuses_one_that_is_not_there(
    database_url: str, tmp_path: Path
) -> None:
    typo = tmp_path / "typo"
    refused = _admin_token(typo, database_url)
    assert refused.returncode == 1, refused.stdout
    assert refused.stdout == "" and "Traceback" not in refused.stderr
    assert "there is no stackcascade database at" in refused.stderr and "nothing was created" in refused.stderr
    assert not typo.exists(), "no data dir, database or key was made up"
    data_dir = tmp_path / "data"
    with serve(data_dir, database_url):
        pass
    minted = _admin_token(data_dir, database_url)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    assert token.startswith("csc_")
    with serve(data_dir, database_url) as served, served.client(token) as api:
        assert api.get("/api/tokens").status_code == 200


SHARED_POOL = "organizations as this server's user"


def test_the_local_pool_warns_when_a_second_organization_shares_it(database_url: str, tmp_path: Path) -> None:
    token = "csc_shared_" + "z" * 20
    env = {"CASCADE_ADMIN_TOKEN": token}
    with serve(tmp_path, database_url, "--runners", "1", env=env) as served, served.client(token) as api:
        assert api.post("/api/stacks/alpha/web", json={"stackName": "prod"}).status_code == 200
        assert api.post("/api/stacks/alpha/db", json={"stackName": "prod"}).status_code == 200
        assert api.post("/api/stacks/beta/web", json={"stackName": "prod"}).status_code == 200
    assert served.banner.count(SHARED_POOL) == 1, f"warned once, when beta was created:\n{served.banner}"
    assert "runs the deployments of 2 organizations" in served.banner
    assert "README: Who can reach what" in served.banner
    with serve(tmp_path, database_url, "--runners", "1", env=env) as restarted:
        pass
    assert SHARED_POOL in restarted.banner, f"a restart says so at once:\n{restarted.banner}"
    with serve(tmp_path, database_url, "--runners", "0", env=env) as without_pool, without_pool.client(token) as api:
        assert api.post("/api/stacks/gamma/web", json={"stackName": "prod"}).status_code == 200
    assert SHARED_POOL not in without_pool.banner, "no local pool: nothing shared"


def test_one_organization_on_the_local_pool_gets_no_warning(database_url: str, tmp_path: Path) -> None:
    token = "csc_single_" + "z" * 20
    env = {"CASCADE_ADMIN_TOKEN": token}
    with serve(tmp_path, database_url, "--runners", "1", env=env) as served, served.client(token) as api:
        assert api.post("/api/stacks/alpha/web", json={"stackName": "prod"}).status_code == 200
    with serve(tmp_path, database_url, "--runners", "1", env=env) as again:
        pass
    assert SHARED_POOL not in served.banner + again.banner


def wait_for_cascade(api: httpx2.Client, org: str, cascade_id: str, seconds: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cascade = api.get(f"/api/orgs/{org}/cascades/{cascade_id}").json()
        if cascade["status"] != "running":
            return dict(cascade)
        time.sleep(0.1)
    raise AssertionError(f"cascade {cascade_id} still running after {seconds} s")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_stop_the_server_cleanly(signum: int, tmp_path: Path) -> None:
    with serve(tmp_path, f"sqlite:///{tmp_path}/x.db") as served:
        served.process.send_signal(signum)
        served.process.wait(timeout=15)
    assert served.process.returncode == 0
    assert "Traceback" not in served.banner
