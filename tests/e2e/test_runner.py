"""Deployments run for real through the local pool: git, pre-run commands, runtimes, logs, outputs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import sqlalchemy as sa

from stackcascade.store.db import Database
from tests.e2e.helpers import SECRET, all_logs, cascade_yaml, deploy, git_repo, wait_for, wait_for_log
from tests.support import LiveServer

UPDATE = """
echo "layer=$LAYER secret=$API_KEY from-prerun=$FROM_PRERUN"
echo "identity $CASCADE_ORG/$CASCADE_PROJECT/$CASCADE_STACK $CASCADE_OPERATION v$CASCADE_VERSION ci=$PULUMI_CI_SYSTEM"
test -n "$CASCADE_TOKEN" && test -f "$CASCADE_UPSTREAM_OUTPUTS" && echo "identity ok"
printf '{"endpoint": "https://%s.example", "password": {"secret": "%s"}}' "$LAYER" "$API_KEY" > "$CASCADE_OUTPUTS"
"""


@pytest.fixture
def api(pool_server: LiveServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(
        base_url=pool_server.url, headers={"Authorization": f"token {pool_server.admin_token}"}, timeout=30
    ) as client:
        yield client


def new_stack(api: httpx2.Client, org: str, repo_url: str, **settings_extra: object) -> str:
    assert api.post(f"/api/stacks/{org}/net", json={"stackName": "prod"}).status_code == 200
    settings = {
        "sourceContext": {"git": {"repoUrl": repo_url, "branch": "main"}},
        "operationContext": {"environmentVariables": {"LAYER": "net", "API_KEY": {"secret": SECRET}}},
        **settings_extra,
    }
    assert api.post(f"/api/stacks/{org}/net/prod/deployments/settings", json=settings).status_code == 200
    return f"{org}/net/prod"


def test_a_deployment_runs_every_step_streams_masked_logs_and_records_outputs(
    api: httpx2.Client, org: str, tmp_path: Path, pool_server: LiveServer
) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=UPDATE)})
    stack = new_stack(api, org, repo)
    api.post(
        f"/api/stacks/{stack}/deployments/settings",
        json={"operationContext": {"preRunCommands": ['echo FROM_PRERUN=hello >> "$CASCADE_ENV"', "echo pre-run ran"]}},
    )
    deployment_id = deploy(api, stack)
    body = wait_for(api, stack, deployment_id)
    assert body["status"] == "succeeded", body
    steps = body["jobs"][0]["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [
        ("source", "succeeded"),
        ("pre-run", "succeeded"),
        ("operation", "succeeded"),
        ("outputs", "succeeded"),
    ]
    lines = all_logs(api, stack, deployment_id)
    text = "\n".join(line["line"] for line in lines)
    assert "layer=net secret=[secret] from-prerun=hello" in text
    assert f"identity {org}/net/prod update v1 ci=stackcascade" in text
    assert "identity ok" in text and "pre-run ran" in text
    assert {line["header"] for line in lines} >= {"source", "pre-run", "operation"}
    outputs = api.get(f"/api/stacks/{stack}/outputs").json()
    assert outputs == {
        "outputs": {"endpoint": "https://net.example", "password": "[secret]"},
        "secretOutputs": ["password"],
    }
    revealed = api.get(f"/api/stacks/{stack}/outputs", params={"showSecrets": "true"}).json()
    assert revealed["outputs"]["password"] == SECRET
    for path in (
        f"/api/stacks/{stack}/deployments/{deployment_id}",
        f"/api/stacks/{stack}/deployments/settings",
        f"/api/stacks/{stack}/outputs",
    ):
        assert SECRET not in api.get(path).text
    assert SECRET not in text


def test_events_of_a_run_are_in_the_outbox_in_order(
    api: httpx2.Client, org: str, tmp_path: Path, pool_server: LiveServer
) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update="echo '{}' > \"$CASCADE_OUTPUTS\"")})
    stack = new_stack(api, org, repo)
    deployment_id = deploy(api, stack)
    assert wait_for(api, stack, deployment_id)["status"] == "succeeded"

    async def kinds() -> list[str]:
        db = Database(pool_server.database_url)
        try:
            async with db.read() as conn:
                rows = await conn.execute(
                    sa.text("SELECT kind FROM events WHERE deployment_id = :d ORDER BY id"), {"d": deployment_id}
                )
                return [r.kind for r in rows]
        finally:
            await db.dispose()

    import asyncio

    assert asyncio.run(kinds()) == [
        "deployment_queued",
        "deployment_started",
        "deployment_succeeded",
        "update_succeeded",
    ]


def test_a_failed_update_keeps_the_previous_outputs(api: httpx2.Client, org: str, tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    repo = git_repo(repo_dir, {"Cascade.yaml": cascade_yaml(update=UPDATE)})
    stack = new_stack(api, org, repo)
    assert wait_for(api, stack, deploy(api, stack))["status"] == "succeeded"
    (repo_dir / "Cascade.yaml").write_text(
        cascade_yaml(update='echo \'{"endpoint": "broken"}\' > "$CASCADE_OUTPUTS"\nexit 3')
    )
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e.invalid", "commit", "-qam", "broken"],
        cwd=repo_dir,
        check=True,
    )
    failed = wait_for(api, stack, deploy(api, stack))
    assert failed["status"] == "failed"
    assert "exit 3" in failed["reason"]
    assert api.get(f"/api/stacks/{stack}/outputs").json()["outputs"]["endpoint"] == "https://net.example"


@pytest.mark.parametrize(
    ("case", "files", "settings", "reason_part", "log_part"),
    [
        (
            "bad repository",
            None,
            {"sourceContext": {"git": {"repoUrl": "file:///nonexistent/repo.git"}}},
            "nonexistent",
            "nonexistent",
        ),
        (
            "bad branch",
            {"Cascade.yaml": cascade_yaml(update="true")},
            {"sourceContext": {"git": {"branch": "no-such-branch"}}},
            "no-such-branch",
            "no-such-branch",
        ),
        (
            "failing pre-run",
            {"Cascade.yaml": cascade_yaml(update="true")},
            {"operationContext": {"preRunCommands": ["echo before", "exit 7"]}},
            "pre-run command 2 failed (exit 7)",
            "before",
        ),
        ("no project", {"README.md": "nothing to run"}, {}, "no recognisable project", "no recognisable project"),
        ("missing operation", {"Cascade.yaml": cascade_yaml(preview="true")}, {}, "update", "update"),
        (
            "missing pulumi CLI",
            {"Pulumi.yaml": "name: x\nruntime: yaml\n"},
            {},
            "pulumi CLI is not installed",
            "pulumi",
        ),
    ],
)
def test_failure_paths_end_failed_with_a_reason_and_a_log(
    api: httpx2.Client,
    org: str,
    tmp_path: Path,
    case: str,
    files: dict[str, str] | None,
    settings: dict[str, object],
    reason_part: str,
    log_part: str,
) -> None:
    repo = git_repo(tmp_path / "repo", files) if files else "file:///nonexistent/repo.git"
    stack = new_stack(api, org, repo)
    if settings:
        assert api.post(f"/api/stacks/{stack}/deployments/settings", json=settings).status_code == 200
    deployment_id = deploy(api, stack)
    body = wait_for(api, stack, deployment_id)
    assert body["status"] == "failed", case
    assert reason_part in body["reason"], (case, body["reason"])
    assert log_part in "\n".join(line["line"] for line in all_logs(api, stack, deployment_id)), case
    assert any(step["status"] == "failed" for step in body["jobs"][0]["steps"]), case


def _wait_gone(pid: int, seconds: float = 20) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_cancelling_a_running_deployment_kills_its_process_group(api: httpx2.Client, org: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    update = f"sleep 300 &\necho $! > {pid_file}\necho started\nwait"
    stack = new_stack(api, org, git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)}))
    deployment_id = deploy(api, stack)
    wait_for_log(api, stack, deployment_id, "started")
    running = api.get(f"/api/stacks/{stack}/deployments/{deployment_id}").json()
    assert running["status"] == "running"
    cmdlines = [p.read_bytes() for p in Path("/proc").glob("[0-9]*/cmdline") if p.exists()]
    assert not any(SECRET.encode() in c for c in cmdlines), "a secret reached a process's argv"
    assert api.post(f"/api/stacks/{stack}/deployments/{deployment_id}/cancel").status_code == 200
    body = wait_for(api, stack, deployment_id)
    assert (body["status"], body["reason"]) == ("failed", "cancelled")
    assert _wait_gone(int(pid_file.read_text())), "the background child survived the cancel"


def test_a_deployment_past_its_timeout_is_stopped(api: httpx2.Client, org: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    update = f"sleep 300 &\necho $! > {pid_file}\nwait"
    stack = new_stack(api, org, git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)}))
    api.post(f"/api/stacks/{stack}/deployments/settings", json={"operationContext": {"options": {"timeout": 2}}})
    body = wait_for(api, stack, deploy(api, stack))
    assert (body["status"], body["reason"]) == ("failed", "timed out")
    assert _wait_gone(int(pid_file.read_text()))


def test_log_lines_reach_the_api_while_the_process_still_runs(api: httpx2.Client, org: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    update = f"echo first-line\nwhile [ ! -f {gate} ]; do sleep 0.05; done\necho after-gate"
    stack = new_stack(api, org, git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)}))
    deployment_id = deploy(api, stack)
    wait_for_log(api, stack, deployment_id, "first-line")
    assert api.get(f"/api/stacks/{stack}/deployments/{deployment_id}").json()["status"] == "running"
    gate.touch()
    assert wait_for(api, stack, deployment_id)["status"] == "succeeded"
    assert "after-gate" in "\n".join(line["line"] for line in all_logs(api, stack, deployment_id))


def test_log_step_mode_pages_one_step(api: httpx2.Client, org: str, tmp_path: Path) -> None:
    update = "for i in $(seq 1 30); do echo line-$i; done\necho '{}' > \"$CASCADE_OUTPUTS\""
    stack = new_stack(api, org, git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)}))
    deployment_id = deploy(api, stack)
    assert wait_for(api, stack, deployment_id)["status"] == "succeeded"
    page = api.get(
        f"/api/stacks/{stack}/deployments/{deployment_id}/logs", params={"job": 0, "step": 2, "offset": 0, "count": 10}
    ).json()
    assert page["__type"] == "DeploymentLogsStep"
    assert len(page["lines"]) == 10 and page["nextOffset"] == 10
    rest = api.get(
        f"/api/stacks/{stack}/deployments/{deployment_id}/logs",
        params={"job": 0, "step": 2, "offset": 10, "count": 499},
    ).json()
    assert "line-30" in [line["line"] for line in rest["lines"]]
    assert api.get(f"/api/stacks/{stack}/deployments/{deployment_id}/logs", params={"count": 500}).status_code == 400
