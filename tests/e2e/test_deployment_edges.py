"""Deployment webhooks end to end: an upstream update that succeeds deploys its downstream stacks for real."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2

from tests.e2e.helpers import all_logs, cascade_yaml, deploy, git_repo, wait_for
from tests.support import LiveServer


def test_an_edge_deploys_the_downstream_stack_after_the_upstream_succeeds(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    update = """
if [ "$CASCADE_PROJECT" = network ]; then
  echo '{"vpc": "vpc-123", "token": {"secret": "upstream-secret-4711"}}' > "$CASCADE_OUTPUTS"
fi
echo "upstream: $(cat "$CASCADE_UPSTREAM_OUTPUTS")"
"""
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)})
    with pool_server.client() as api:
        # Per-edge mode: each fired edge deploys its target at once (Pulumi's behaviour; cascades coalesce).
        assert api.patch(f"/api/orgs/{org}/settings", json={"cascadeMode": "per-edge"}).status_code == 200
        for project in ("network", "database", "cluster"):
            assert api.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
            settings = {"sourceContext": {"git": {"repoUrl": repo, "branch": "main"}}}
            assert api.post(f"/api/stacks/{org}/{project}/prod/deployments/settings", json=settings).status_code == 200
        for downstream in ("database", "cluster"):
            edge = {"format": "pulumi_deployments", "payloadUrl": f"{downstream}/prod", "filters": ["update_succeeded"]}
            assert api.post(f"/api/stacks/{org}/network/prod/hooks", json=edge).status_code == 201
        upstream = deploy(api, f"{org}/network/prod")
        assert wait_for(api, f"{org}/network/prod", upstream)["status"] == "succeeded"
        for downstream in ("database", "cluster"):
            stack = f"{org}/{downstream}/prod"
            listed = _wait_for_deployments(api, stack, 1)
            finished = wait_for(api, stack, listed[0]["id"])
            assert finished["status"] == "succeeded"
            assert finished["initiator"] == "webhook" and finished["version"] == 1
            assert finished["triggeredBy"] == upstream  # linked to the upstream deployment
            # CASCADE_UPSTREAM_OUTPUTS holds network's outputs, and the secret one is masked in the log.
            lines = [x["line"] for x in all_logs(api, stack, listed[0]["id"])]
            printed = "\n".join(lines[next(i for i, line in enumerate(lines) if line.startswith("upstream: {")) :])
            assert '"network/prod"' in printed and '"vpc-123"' in printed and "[secret]" in printed
            assert not any("upstream-secret-4711" in line for line in lines)
        # The downstream deployments emit update_succeeded too, but they have no edges: nothing else runs.
        assert len(api.get(f"/api/stacks/{org}/network/prod/deployments").json()["deployments"]) == 1


def _wait_for_deployments(api: httpx2.Client, stack: str, count: int, seconds: float = 60) -> list[dict[str, object]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        listed = api.get(f"/api/stacks/{stack}/deployments").json()["deployments"]
        if len(listed) >= count:
            return list(listed)
        time.sleep(0.05)
    raise AssertionError(f"{stack} did not get {count} deployment(s) within {seconds} s")
