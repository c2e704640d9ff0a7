"""Helpers for end-to-end runs: real git repositories, waiting for deployments to end, cascades."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx2

TERMINAL = {"succeeded", "failed", "skipped"}
SECRET = "sup3r-s3cret-value-4711"
DIAMOND = [("network", "database"), ("network", "cluster"), ("database", "app"), ("cluster", "app")]


def git_repo(path: Path, files: dict[str, str], *, branch: str = "main") -> str:
    """A real git repository holding ``files``; returns its file:// URL."""
    path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", branch], cwd=path, check=True)
    subprocess.run(["git", "add", "."], cwd=path, check=True)
    subprocess.run(["git", *identity, "commit", "-q", "-m", "initial"], cwd=path, check=True)
    return path.resolve().as_uri()


def cascade_yaml(**operations: str) -> str:
    lines = ["operations:"]
    for name, command in operations.items():
        lines.append(f"  {name}: |")
        lines.extend(f"    {line}" for line in command.strip().splitlines())
    return "\n".join(lines) + "\n"


def deploy(api: httpx2.Client, stack: str, body: dict[str, Any] | None = None) -> str:
    response = api.post(f"/api/stacks/{stack}/deployments", json={"operation": "update", **(body or {})})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def wait_for(
    api: httpx2.Client, stack: str, deployment_id: str, *, statuses: set[str] = TERMINAL, seconds: float = 90
) -> dict[str, Any]:
    """Poll until the deployment reaches one of ``statuses`` (bounded in time)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = api.get(f"/api/stacks/{stack}/deployments/{deployment_id}").json()
        if body["status"] in statuses:
            return dict(body)
        time.sleep(0.05)
    raise AssertionError(f"deployment {deployment_id} did not reach {statuses} in {seconds}s")


def all_logs(api: httpx2.Client, stack: str, deployment_id: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(1000):
        params = {"count": 499} | ({"continuationToken": token} if token else {})
        body = api.get(f"/api/stacks/{stack}/deployments/{deployment_id}/logs", params=params).json()
        assert body["__type"] == "DeploymentLogs"
        lines += body["lines"]
        token = body.get("nextToken")
        if token is None:
            return lines
    raise AssertionError("log stream did not end")


def wait_for_log(api: httpx2.Client, stack: str, deployment_id: str, text: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = api.get(f"/api/stacks/{stack}/deployments/{deployment_id}/logs", params={"count": 499}).json()
        if any(text in line["line"] for line in body["lines"]):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} did not show up in the log in {seconds}s")


# --- cascades -------------------------------------------------------------------------------------


def diamond(api: httpx2.Client, org: str, repo: str, gated: tuple[str, str] | None = None) -> None:
    graph(api, org, repo, DIAMOND, gated=gated)


def graph(
    api: httpx2.Client, org: str, repo: str, edges: list[tuple[str, str]], gated: tuple[str, str] | None = None
) -> None:
    """A prod stack per project named in ``edges``, each deploying ``repo``; an edge per pair (``gated``:
    that one requires approval)."""
    for project in dict.fromkeys(name for pair in edges for name in pair):
        assert api.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
        settings = {"sourceContext": {"git": {"repoUrl": repo, "branch": "main"}}}
        assert api.post(f"/api/stacks/{org}/{project}/prod/deployments/settings", json=settings).status_code == 200
    for up, down in edges:
        edge = {"format": "pulumi_deployments", "payloadUrl": f"{down}/prod", "filters": ["update_succeeded"]}
        if (up, down) == gated:
            edge["requireApproval"] = True
        response = api.post(f"/api/stacks/{org}/{up}/prod/hooks", json=edge)
        assert response.status_code == 201, response.text


def broken_database_repo(tmp_path: Path) -> tuple[str, Path]:
    """A repository whose update fails on the database stack until the returned file exists (the fix)."""
    fixed = tmp_path / "fixed"
    update = f'if [ "$CASCADE_PROJECT" = database ] && [ ! -f {fixed} ]; then echo broken; exit 3; fi\necho ok'
    return git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)}), fixed


def cascade_of(api: httpx2.Client, org: str, deployment_id: str) -> str:
    return str(api.get(f"/api/stacks/{org}/network/prod/deployments/{deployment_id}").json()["cascadeId"])


def wait_cascade(api: httpx2.Client, org: str, cascade_id: str, until: Any, seconds: float = 90) -> dict[str, Any]:
    """Poll the cascade until ``until(cascade)`` holds (bounded in time)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cascade = api.get(f"/api/orgs/{org}/cascades/{cascade_id}").json()
        if until(cascade):
            return dict(cascade)
        time.sleep(0.05)
    raise AssertionError(f"cascade {cascade_id} did not get there in {seconds} s: {cascade}")


def ended(cascade: dict[str, Any]) -> bool:
    """A cascade no longer running (for ``wait_cascade``)."""
    return cascade["status"] != "running"


def member(cascade: dict[str, Any], project: str) -> dict[str, Any]:
    return next(m for m in cascade["members"] if m["stack"] == f"{project}/prod")
