"""Two servers on one PostgreSQL database: a cascade moves on from one replica's runner to the other's at
once, each replica waking the other's long-polling runners with NOTIFY (``services.replica_signals``)."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.fernet import Fernet

from tests.e2e.helpers import deploy, member, wait_cascade
from tests.support import LiveServer, fresh_database, start_server

ORG = "replicas"
START = [{"index": 0, "name": "source", "status": "running"}]
# Far longer than the test: a runner's long poll that is not woken asks the database again only then.
POLL_SECONDS = 600
# A long poll that is not woken still asks once more when it ends, and would get the job then: an
# answer well before that end is one that a notification woke.
LONG_POLL = 30
WOKEN_WITHIN = 10


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    data_dir = tmp_path_factory.mktemp("replicas")
    with fresh_database("postgresql", data_dir) as url:
        key = Fernet.generate_key().decode()  # replicas share the secret key (README, Configuration)
        config = {"runners": 0, "claim_poll_seconds": POLL_SECONDS, "secret_key": key}
        first = start_server(url, data_dir / "first", **config)
        try:
            second = start_server(url, data_dir / "second", **config)
            try:
                yield first, second
            finally:
                second.stop()
        finally:
            first.stop()


def _claim(server: LiveServer, token: str, runner_id: str, wait_seconds: float) -> dict[str, Any] | None:
    """A runner's long-polling claim on ``server`` (over HTTP, as ``cascade runner`` sends it)."""
    with httpx2.Client(base_url=server.url, headers={"Authorization": f"token {token}"}, timeout=60) as runner:
        body = {"runnerId": runner_id, "waitSeconds": wait_seconds, "start": START}
        answer = runner.post("/api/runner/claim", json=body)
    assert answer.status_code in (200, 204), answer.text
    return answer.json() if answer.status_code == 200 else None


def _finish(server: LiveServer, token: str, runner_id: str, deployment_id: str) -> None:
    with httpx2.Client(base_url=server.url, headers={"Authorization": f"token {token}"}, timeout=60) as runner:
        body = {"runnerId": runner_id, "status": "succeeded", "outputs": {"done": True}}
        answer = runner.post(f"/api/runner/deployments/{deployment_id}/finish", json=body)
    assert answer.status_code == 200, answer.text


def test_a_cascade_moves_between_replicas_without_waiting_for_a_poll(
    replicas: tuple[LiveServer, LiveServer], tmp_path: Path
) -> None:
    first, second = replicas
    _until(lambda: first.signals.others and second.signals.others, "the replicas know of each other")
    with first.client() as api:
        for project in ("net", "app"):
            assert api.post(f"/api/stacks/{ORG}/{project}", json={"stackName": "prod"}).status_code == 200
            settings = {"sourceContext": {"git": {"repoUrl": "https://example.com/x.git", "branch": "main"}}}
            assert api.post(f"/api/stacks/{ORG}/{project}/prod/deployments/settings", json=settings).status_code == 200
        edge = {"format": "pulumi_deployments", "payloadUrl": "app/prod", "filters": ["update_succeeded"]}
        assert api.post(f"/api/stacks/{ORG}/net/prod/hooks", json=edge).status_code == 201
        token = api.post("/api/tokens", json={"runner": True, "name": "replica-test"}).json()["token"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        # A runner of the second replica waits; the deployment is created through the first.
        on_second = pool.submit(_claim, second, token, "second-slot", LONG_POLL)
        _wait_until_waiting(second)
        with first.client() as api:
            root = deploy(api, f"{ORG}/net/prod")
        job = on_second.result(timeout=WOKEN_WITHIN)  # woken by the first replica, not by its poll's end
        assert job is not None and job["deploymentId"] == root

        # A runner of the first replica waits; the second replica's finish makes app ready.
        on_first = pool.submit(_claim, first, token, "first-slot", LONG_POLL)
        _wait_until_waiting(first)
        _finish(second, token, "second-slot", root)
        following = on_first.result(timeout=WOKEN_WITHIN)
        assert following is not None and following["project"] == "app"
        _finish(first, token, "first-slot", following["deploymentId"])

    with second.client() as api:
        cascade_id = api.get(f"/api/stacks/{ORG}/net/prod/deployments/{root}").json()["cascadeId"]
        cascade = wait_cascade(api, ORG, cascade_id, lambda c: c["status"] != "running")
    assert cascade["status"] == "succeeded"
    assert member(cascade, "app")["deploymentId"] == following["deploymentId"]


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.01)


def _wait_until_waiting(server: LiveServer) -> None:
    """Until a runner's claim waits on ``server`` (a long poll registered with its claim gate)."""
    _until(lambda: len(server.context.claims.pending) == 1, "a claim waiting on the server")
