"""A separate ``cascade runner`` process: runs deployments over HTTP, stops cleanly, and a killed one is noticed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from stackcascade.runner.client import RunnerClient
from tests.e2e.helpers import cascade_yaml, deploy, git_repo, wait_for, wait_for_log
from tests.support import DATABASES, LiveServer, serving, start_server

CASCADE = Path(sys.executable).parent / "cascade"


@pytest.fixture(scope="module", params=DATABASES)
def bare_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server without local runners and with a short lease, so a lost runner is noticed quickly."""
    data_dir = tmp_path_factory.mktemp("bare")
    with serving(request.param, data_dir, runners=0, lease_seconds=2) as server:
        yield server


@pytest.fixture
def api(bare_server: LiveServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(
        base_url=bare_server.url, headers={"Authorization": f"token {bare_server.admin_token}"}, timeout=30
    ) as client:
        yield client


def start_runner(api: httpx2.Client, server: LiveServer, work_dir: Path, *extra: str) -> subprocess.Popen[str]:
    token = api.post("/api/tokens", json={"runner": True, "name": "remote-test"}).json()["token"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")} | {"CASCADE_RUNNER_TOKEN": token}
    return subprocess.Popen(
        [str(CASCADE), "runner", "--server", server.url, "--work-dir", str(work_dir), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop_runner(runner: subprocess.Popen[str], *, terminate: bool = True) -> str:
    """SIGTERM (unless the test already sent it) and wait; a runner that does not stop in time is killed."""
    if terminate and runner.poll() is None:
        runner.send_signal(signal.SIGTERM)
    try:
        output, _ = runner.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(runner.pid, signal.SIGKILL)
        output, _ = runner.communicate()
    return output


def make_stack(api: httpx2.Client, org: str, repo: str) -> str:
    assert api.post(f"/api/stacks/{org}/app", json={"stackName": "prod"}).status_code == 200
    settings = {"sourceContext": {"git": {"repoUrl": repo, "branch": "main"}}}
    assert api.post(f"/api/stacks/{org}/app/prod/deployments/settings", json=settings).status_code == 200
    return f"{org}/app/prod"


def test_a_remote_runner_runs_deployments_and_exits_cleanly_on_sigterm(
    api: httpx2.Client, bare_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = git_repo(
        tmp_path / "repo",
        {"Cascade.yaml": cascade_yaml(update='echo remote-run\necho \'{"where": "remote"}\' > "$CASCADE_OUTPUTS"')},
    )
    stack = make_stack(api, org, repo)
    runner = start_runner(api, bare_server, tmp_path / "work", "--concurrency", "2")
    try:
        first, second = deploy(api, stack), deploy(api, stack)
        assert wait_for(api, stack, first)["status"] == "succeeded"
        assert wait_for(api, stack, second)["status"] == "succeeded"
        assert api.get(f"/api/stacks/{stack}/outputs").json()["outputs"] == {"where": "remote"}
    finally:
        output = stop_runner(runner)
    assert runner.returncode == 0, output
    assert "runner stopped after 2 deployment(s)" in output


def test_sigterm_lets_the_running_deployment_finish_first(
    api: httpx2.Client, bare_server: LiveServer, org: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    update = f"echo waiting\nwhile [ ! -f {gate} ]; do sleep 0.05; done\necho finished-after-sigterm"
    stack = make_stack(api, org, git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)}))
    runner = start_runner(api, bare_server, tmp_path / "work", "--grace", "60")
    try:
        deployment_id = deploy(api, stack)
        wait_for_log(api, stack, deployment_id, "waiting")
        runner.send_signal(signal.SIGTERM)
        gate.touch()
        assert wait_for(api, stack, deployment_id)["status"] == "succeeded"
    finally:
        output = stop_runner(runner, terminate=False)
    assert runner.returncode == 0, output


def test_a_killed_runner_fails_its_deployment_as_runner_lost(
    api: httpx2.Client, bare_server: LiveServer, org: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    update = f"sleep 300 &\necho $! > {pid_file}\necho started\nwait"
    stack = make_stack(api, org, git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)}))
    runner = start_runner(api, bare_server, tmp_path / "work")
    try:
        deployment_id = deploy(api, stack)
        wait_for_log(api, stack, deployment_id, "started")
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait(timeout=10)
        body = wait_for(api, stack, deployment_id, seconds=60)
        assert (body["status"], body["reason"]) == ("failed", "runner lost")
        # The killed runner could not remove its scratch dir (upstream outputs, secrets opened): the next
        # runner on the same work dir does, first thing.
        scratch = tmp_path / "work" / "scratch"
        assert len(list(scratch.iterdir())) == 1
        restarted = start_runner(api, bare_server, tmp_path / "work")
        try:
            deadline = time.monotonic() + 30
            while any(scratch.iterdir()) and time.monotonic() < deadline and restarted.poll() is None:
                time.sleep(0.05)
            assert list(scratch.iterdir()) == []
        finally:
            output = stop_runner(restarted)
        assert "removed 1 scratch dir(s) a killed runner left behind" in output
    finally:
        if runner.poll() is None:
            runner.kill()
        runner.communicate(timeout=10)  # reap it and close its pipe
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_runner_tokens_can_do_nothing_but_the_runner_protocol(
    api: httpx2.Client, bare_server: LiveServer, org: str
) -> None:
    token = api.post("/api/tokens", json={"runner": True}).json()["token"]
    with httpx2.Client(base_url=bare_server.url, headers={"Authorization": f"token {token}"}) as runner_api:
        assert runner_api.get("/api/user/stacks", params={"organization": org}).status_code == 404
        assert runner_api.post(f"/api/stacks/{org}/x", json={"stackName": "y"}).status_code == 404
        assert runner_api.post("/api/runner/claim", json={"runnerId": "r", "waitSeconds": 0}).status_code in (200, 204)
    assert api.post("/api/runner/claim", json={"runnerId": "r", "waitSeconds": 0}).status_code == 403


def test_a_finish_over_http_can_claim_the_runners_next_deployment(
    api: httpx2.Client, bare_server: LiveServer, org: str
) -> None:
    """Protocol 3: ``next`` on a finish claims (and starts) this runner's next deployment in the same call."""
    stacks = []
    for project in ("one", "two"):
        assert api.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
        settings = {"sourceContext": {"git": {"repoUrl": "https://example.com/x.git", "branch": "main"}}}
        assert api.post(f"/api/stacks/{org}/{project}/prod/deployments/settings", json=settings).status_code == 200
        stacks.append(f"{org}/{project}/prod")
    queued = {stack: deploy(api, stack) for stack in stacks}
    token = api.post("/api/tokens", json={"runner": True}).json()["token"]
    start = [{"index": 0, "name": "source", "status": "running"}]
    with httpx2.Client(base_url=bare_server.url, headers={"Authorization": f"token {token}"}, timeout=30) as runner:
        mine = []
        for _ in range(20):  # other tests' work on this shared server is claimed and finished first
            first = runner.post("/api/runner/claim", json={"runnerId": "r", "waitSeconds": 5, "start": start}).json()
            assert first["protocol"] == 3
            if first["deploymentId"] in queued.values():
                mine.append(first)
                break
            finish = runner.post(
                f"/api/runner/deployments/{first['deploymentId']}/finish", json={"runnerId": "r", "status": "failed"}
            )
            assert finish.status_code == 200
        [first] = mine
        url = f"/api/runner/deployments/{first['deploymentId']}/finish"
        refused = runner.post(url, json={"runnerId": "r", "status": "succeeded", "next": 5})
        assert refused.status_code == 400 and "'next' must be an object" in refused.json()["message"]
        stack = f"{org}/{first['project']}/{first['stack']}"
        assert api.get(f"/api/stacks/{stack}/deployments/{first['deploymentId']}").json()["status"] == "running"

        done = runner.post(url, json={"runnerId": "r", "status": "succeeded", "next": {"start": start}})
        assert done.status_code == 200, done.text
        handed = done.json()["next"]
        assert done.json()["status"] == "succeeded"
        assert handed["deploymentId"] in queued.values() and handed["deploymentId"] != first["deploymentId"]
        assert handed["started"] is True and handed["deploymentToken"]
        other = f"{org}/{handed['project']}/{handed['stack']}"
        assert api.get(f"/api/stacks/{other}/deployments/{handed['deploymentId']}").json()["status"] == "running"

        last = runner.post(
            f"/api/runner/deployments/{handed['deploymentId']}/finish",
            json={"runnerId": "r", "status": "succeeded", "next": {}},
        )
        assert last.status_code == 200 and last.json()["next"] is None


class _LosesAnswers(httpx2.AsyncBaseTransport):
    """Real HTTP, except that the first answer to each call named in ``lose`` is dropped after the server
    sent it: the runner sees a broken connection, as when a proxy or the network fails at that moment."""

    def __init__(self, lose: set[str]) -> None:
        self._http = httpx2.AsyncHTTPTransport()
        self._lose = set(lose)
        self.lost: dict[str, dict[str, Any]] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._http.handle_async_request(request)
        call = request.url.path.rsplit("/", 1)[-1]
        if call in self._lose and response.status_code == 200:
            self._lose.discard(call)
            await response.aread()
            self.lost[call] = json.loads(response.content)
            raise httpx2.ReadError("connection reset while reading the answer")
        return response

    async def aclose(self) -> None:
        await self._http.aclose()


def test_a_runner_that_loses_the_answer_to_a_claim_or_finish_gets_the_same_job_when_it_asks_again(
    api: httpx2.Client, bare_server: LiveServer, org: str
) -> None:
    """The runner retries with the claim's key; the server hands the deployment it leased again (new
    token), and answers a finish it already applied as done. Without this the job would stay leased to
    no one until the lease ran out, and then fail as "runner lost" without having run."""
    for project in ("one", "two"):
        assert api.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
        settings = {"sourceContext": {"git": {"repoUrl": "https://example.com/x.git", "branch": "main"}}}
        assert api.post(f"/api/stacks/{org}/{project}/prod/deployments/settings", json=settings).status_code == 200
        deploy(api, f"{org}/{project}/prod")
    token = api.post("/api/tokens", json={"runner": True}).json()["token"]
    start = [{"index": 0, "name": "source", "status": "running"}]

    async def lose_and_retry() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        transport = _LosesAnswers({"claim", "finish"})
        client = RunnerClient(bare_server.url, token, "lossy", transport=transport)
        try:
            job = await client.claim(5, start)
            assert job is not None
            following = await client.finish(job["deploymentId"], {"status": "succeeded"}, next_start=start)
            assert following is not None
            await client.finish(following["deploymentId"], {"status": "succeeded"})
            return job, transport.lost["claim"], following, transport.lost["finish"]
        finally:
            await client.close()

    job, lost_claim, following, lost_finish = asyncio.run(lose_and_retry())

    assert job["deploymentId"] == lost_claim["deploymentId"]  # the same deployment, not the next one
    assert job["deploymentToken"] != lost_claim["deploymentToken"]  # the lost token is revoked
    assert following["deploymentId"] == lost_finish["next"]["deploymentId"] != job["deploymentId"]
    assert lost_finish["status"] == "succeeded"
    for handed in (job, following):
        stack = f"{handed['org']}/{handed['project']}/{handed['stack']}"
        assert api.get(f"/api/stacks/{stack}/deployments/{handed['deploymentId']}").json()["status"] == "succeeded"
    # the lost token was revoked at once, and the redelivered ones died with their deployments
    lost = httpx2.post(
        f"{bare_server.url}/api/runner/deployments/{job['deploymentId']}/heartbeat",
        headers={"Authorization": f"token {lost_claim['deploymentToken']}"},
        json={"runnerId": "lossy"},
    )
    assert lost.status_code == 401


def test_a_malformed_claim_key_or_retry_flag_is_refused_with_what_to_send(
    api: httpx2.Client, bare_server: LiveServer
) -> None:
    token = api.post("/api/tokens", json={"runner": True}).json()["token"]
    with httpx2.Client(base_url=bare_server.url, headers={"Authorization": f"token {token}"}, timeout=30) as runner:
        for body, message in (
            ({"claimKey": "has spaces"}, "'claimKey' must be 1-64 letters"),
            ({"claimKey": "k" * 65}, "'claimKey' must be 1-64 letters"),
            ({"claimKey": 7}, "'claimKey' must be 1-64 letters"),
            ({"retry": "yes"}, "'retry' must be true or false"),
        ):
            refused = runner.post("/api/runner/claim", json={"runnerId": "r", "waitSeconds": 0, **body})
            assert refused.status_code == 400, refused.text
            assert message in refused.json()["message"]
        finish = runner.post(
            "/api/runner/deployments/nope/finish",
            json={"runnerId": "r", "status": "succeeded", "next": {"claimKey": ""}},
        )
        assert finish.status_code == 400 and "'claimKey' must be 1-64 letters" in finish.json()["message"]


def test_a_deployment_running_through_a_server_restart_is_reported_once_the_server_is_back(
    database_url: str, org: str, tmp_path: Path
) -> None:
    """The server stops for longer than the runner client's own retries (about 6 s), then starts again on
    the same address: the runner keeps the deployment, renews its lease and reports it (it used to end
    "runner lost")."""
    gate = tmp_path / "gate"
    update = f"echo waiting\nwhile [ ! -f {gate} ]; do sleep 0.05; done\necho after-the-restart"
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)})
    server = start_server(database_url, tmp_path / "data", runners=0, lease_seconds=30)
    port = int(server.url.rsplit(":", 1)[1])
    runner = None
    try:
        with server.client() as api:
            stack = make_stack(api, org, repo)
            runner = start_runner(api, server, tmp_path / "work")
            deployment_id = deploy(api, stack)
            wait_for_log(api, stack, deployment_id, "waiting")
        server.stop()
        time.sleep(8)  # the outage under test: longer than the client's retries, well inside the lease
        server = start_server(database_url, tmp_path / "data", runners=0, lease_seconds=30, port=port)
        gate.touch()
        with server.client() as api:
            finished = wait_for(api, stack, deployment_id)
            assert (finished["status"], finished.get("reason")) == ("succeeded", None)
            wait_for_log(api, stack, deployment_id, "after-the-restart")
    finally:
        output = stop_runner(runner) if runner is not None else ""
        server.stop()
    assert runner is not None and runner.returncode == 0, output
