"""Cascades end to end on a real server with real runners: the diamond, failure and retry, an approval gate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2

from tests.e2e.helpers import (
    broken_database_repo,
    cascade_of,
    cascade_yaml,
    deploy,
    diamond,
    git_repo,
    graph,
    member,
    wait_cascade,
    wait_for,
)
from tests.support import LiveServer


def test_one_change_deploys_the_diamond_once_each_with_app_after_both(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update="echo deployed $CASCADE_PROJECT")})
    with pool_server.client() as api:
        diamond(api, org, repo)
        cascade_id = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        cascade = wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running")
        assert cascade["status"] == "succeeded"
        assert [(m["stack"], m["status"], m["version"]) for m in cascade["members"]] == [
            ("network/prod", "succeeded", 1),
            ("cluster/prod", "succeeded", 1),
            ("database/prod", "succeeded", 1),
            ("app/prod", "succeeded", 1),
        ]
        app, database, cluster = member(cascade, "app"), member(cascade, "database"), member(cascade, "cluster")
        root = member(cascade, "network")["deploymentId"]
        app_deployment = api.get(f"/api/stacks/{org}/app/prod/deployments/{app['deploymentId']}").json()
        assert (app_deployment["initiator"], app_deployment["triggeredBy"]) == ("cascade", root)
        assert app["started"] >= max(database["finished"], cluster["finished"])  # RFC 3339 UTC sorts as text
        for project in ("database", "cluster", "app"):
            listed = api.get(f"/api/stacks/{org}/{project}/prod/deployments").json()["deployments"]
            assert len(listed) == 1  # nothing else ran: the members' own events started no cascade
        assert [c["id"] for c in api.get(f"/api/orgs/{org}/cascades").json()["cascades"]] == [cascade_id]


def test_a_failed_member_skips_app_and_a_retry_resumes_it(pool_server: LiveServer, org: str, tmp_path: Path) -> None:
    repo, fixed = broken_database_repo(tmp_path)
    with pool_server.client() as api:
        diamond(api, org, repo)
        cascade_id = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        cascade = wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running")
        assert cascade["status"] == "failed"
        assert (member(cascade, "database")["status"], member(cascade, "cluster")["status"]) == ("failed", "succeeded")
        assert (member(cascade, "app")["status"], member(cascade, "app")["reason"]) == (
            "skipped",
            "upstream database/prod failed",
        )
        fixed.touch()
        cascade = retried_to_the_end(api, org, cascade_id, "database")
        assert cascade["status"] == "succeeded"
        assert (member(cascade, "database")["version"], member(cascade, "app")["version"]) == (2, 1)
        conflict = api.post(f"/api/orgs/{org}/cascades/{cascade_id}/members/app/prod/retry")
        assert conflict.status_code == 409 and "only a failed member" in conflict.json()["message"]


def test_a_failure_stops_every_descendant_and_a_retry_runs_them_in_order(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    # network -> database -> migrate -> app, network -> cluster -> app: cluster fires app, but app is a
    # descendant of the failed database, so it runs only after database's retry has run migrate.
    repo, fixed = broken_database_repo(tmp_path)
    edges = [("network", "database"), ("database", "migrate"), ("migrate", "app")]
    edges += [("network", "cluster"), ("cluster", "app")]
    with pool_server.client() as api:
        graph(api, org, repo, edges)
        cascade_id = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        cascade = wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running")
        assert (cascade["status"], member(cascade, "cluster")["status"]) == ("failed", "succeeded")
        for stopped in ("migrate", "app"):
            assert (member(cascade, stopped)["status"], member(cascade, stopped)["reason"]) == (
                "skipped",
                "upstream database/prod failed",
            )
        fixed.touch()
        cascade = retried_to_the_end(api, org, cascade_id, "database")
        assert cascade["status"] == "succeeded"
        assert [member(cascade, p)["version"] for p in ("database", "migrate", "app")] == [2, 1, 1]
        assert member(cascade, "migrate")["finished"] <= member(cascade, "app")["started"]


def retried_to_the_end(api: httpx2.Client, org: str, cascade_id: str, project: str) -> dict[str, Any]:
    """Retry the member ``project/prod`` of the cascade and wait until the cascade has ended again."""
    retried = api.post(f"/api/orgs/{org}/cascades/{cascade_id}/members/{project}/prod/retry")
    assert retried.status_code == 200, retried.text
    return wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running")


def test_an_approval_gate_waits_for_a_person(pool_server: LiveServer, org: str, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update="echo ok")})
    with pool_server.client() as api:
        diamond(api, org, repo, gated=("cluster", "app"))
        root = deploy(api, f"{org}/network/prod")
        assert wait_for(api, f"{org}/network/prod", root)["status"] == "succeeded"
        cascade_id = cascade_of(api, org, root)
        waiting = wait_cascade(api, org, cascade_id, lambda c: member(c, "app")["status"] == "awaiting-approval")
        assert member(waiting, "app")["deploymentId"] is None
        approved = api.post(f"/api/orgs/{org}/cascades/{cascade_id}/members/app/prod/approve")
        assert approved.status_code == 200, approved.text
        cascade = wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running")
        assert cascade["status"] == "succeeded" and member(cascade, "app")["approvedBy"]


def test_per_edge_mode_on_the_same_diamond_deploys_app_twice(pool_server: LiveServer, org: str, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update="echo ok")})
    with pool_server.client() as api:
        assert api.patch(f"/api/orgs/{org}/settings", json={"cascadeMode": "per-edge"}).status_code == 200
        diamond(api, org, repo)
        root = deploy(api, f"{org}/network/prod")
        assert api.get(f"/api/stacks/{org}/network/prod/deployments/{root}").json()["cascadeId"] is None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            apps = api.get(f"/api/stacks/{org}/app/prod/deployments").json()["deployments"]
            if len(apps) == 2 and all(d["status"] == "succeeded" for d in apps):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"app was not deployed twice: {apps}")
        assert {d["initiator"] for d in apps} == {"webhook"}
        assert api.get(f"/api/orgs/{org}/cascades").json()["cascades"] == []
        # Nothing more comes: once the org is quiet, every stack was deployed exactly as often as its fired
        # incoming edges say (network by hand, database and cluster once, app once per edge).
        while time.monotonic() < deadline:
            counts = api.get(f"/api/orgs/{org}/deployments/metadata").json()["deploymentCounts"]
            if counts["notStarted"] + counts["accepted"] + counts["running"] == 0:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"the org did not become quiet: {counts}")
        assert counts == {**counts, "succeeded": 5, "failed": 0, "skipped": 0, "total": 5}
        for project, expected in (("network", 1), ("database", 1), ("cluster", 1), ("app", 2)):
            listed = api.get(f"/api/stacks/{org}/{project}/prod/deployments").json()["deployments"]
            assert len(listed) == expected, (project, listed)


def test_unchanged_outputs_prune_an_outputs_changed_edge(pool_server: LiveServer, org: str, tmp_path: Path) -> None:
    update = 'echo \'{"vpc": "vpc-fixed"}\' > "$CASCADE_OUTPUTS"'
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)})
    with pool_server.client() as api:
        for project in ("network", "database"):
            assert api.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
            settings = {"sourceContext": {"git": {"repoUrl": repo, "branch": "main"}}}
            assert api.post(f"/api/stacks/{org}/{project}/prod/deployments/settings", json=settings).status_code == 200
        edge = {"format": "pulumi_deployments", "payloadUrl": "database/prod", "triggerOn": "outputs-changed"}
        assert api.post(f"/api/stacks/{org}/network/prod/hooks", json=edge).status_code == 201
        first = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        cascade = wait_cascade(api, org, first, lambda c: c["status"] != "running")
        assert member(cascade, "database")["status"] == "succeeded"  # the outputs were new
        second = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        cascade = wait_cascade(api, org, second, lambda c: c["status"] != "running")
        assert (member(cascade, "database")["status"], member(cascade, "database")["reason"]) == (
            "skipped",
            "outputs of network/prod unchanged",
        )


def test_an_external_update_event_cascades_through_real_deployments(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update='cat "$CASCADE_UPSTREAM_OUTPUTS"')})
    with pool_server.client() as api:
        diamond(api, org, repo)
        event = {"kind": "update_succeeded", "outputs": {"vpc": "vpc-from-ci"}}
        accepted = api.post(f"/api/stacks/{org}/network/prod/events", json=event)
        assert accepted.status_code == 202, accepted.text
        cascade = wait_cascade(api, org, accepted.json()["cascadeId"], lambda c: c["status"] != "running")
        assert cascade["status"] == "succeeded"
        assert [m["version"] for m in cascade["members"]] == [None, 1, 1, 1]  # network ran outside stackcascade
        assert api.get(f"/api/stacks/{org}/network/prod/deployments").json()["deployments"] == []


def test_a_declaration_applied_through_the_api_drives_real_cascades(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update="echo ok")})
    with pool_server.client() as api:
        for project in ("network", "database", "cluster", "app"):
            assert api.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
            settings = {"sourceContext": {"git": {"repoUrl": repo, "branch": "main"}}}
            assert api.post(f"/api/stacks/{org}/{project}/prod/deployments/settings", json=settings).status_code == 200
        declaration = {
            "stacks": [
                {"project": "network", "stack": "prod", "downstreamRefs": ["database/prod", "cluster/prod"]},
                {"project": "database", "stack": "prod", "downstreamRefs": ["app/prod"]},
                {"project": "cluster", "stack": "prod", "downstreamRefs": ["app/prod"]},
            ]
        }
        applied = api.put(f"/api/orgs/{org}/autodeploy", json=declaration)
        assert applied.status_code == 200, applied.text
        assert len(applied.json()["diff"]["create"]) == 4
        cascade_id = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        cascade = wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running")
        assert cascade["status"] == "succeeded"
        assert cascade["waves"] == [["network/prod"], ["cluster/prod", "database/prod"], ["app/prod"]]


def test_two_roots_at_once_run_two_cascades_through_the_per_stack_queue(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update="echo ok")})
    with pool_server.client() as api:
        diamond(api, org, repo)
        first = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        second = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        assert first != second
        for cascade_id in (first, second):
            cascade = wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running")
            assert cascade["status"] == "succeeded"
            assert {m["status"] for m in cascade["members"]} == {"succeeded"}
        for project in ("database", "cluster", "app"):
            listed = api.get(f"/api/stacks/{org}/{project}/prod/deployments").json()["deployments"]
            assert sorted(d["version"] for d in listed) == [1, 2]  # once per cascade, one after the other


def test_a_root_with_a_wide_layer_deploys_every_member_once_and_fails_the_one_without_settings(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    """One finish makes the whole layer ready: each member is queued (together) and runs once, after the
    root; a member whose stack has no deployment settings fails with the reason, and its dependent skips."""
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update="echo deployed $CASCADE_PROJECT")})
    leaves = [f"leaf{i:02d}" for i in range(8)]
    with pool_server.client() as api:
        for project in ["network", *leaves, "bare", "after"]:
            assert api.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
            if project != "bare":
                settings = {"sourceContext": {"git": {"repoUrl": repo, "branch": "main"}}}
                response = api.post(f"/api/stacks/{org}/{project}/prod/deployments/settings", json=settings)
                assert response.status_code == 200
        edges = [("network", leaf) for leaf in [*leaves, "bare"]] + [("bare", "after")]
        for up, down in edges:
            edge = {"format": "pulumi_deployments", "payloadUrl": f"{down}/prod", "filters": ["update_succeeded"]}
            assert api.post(f"/api/stacks/{org}/{up}/prod/hooks", json=edge).status_code == 201
        cascade_id = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        cascade = wait_cascade(api, org, cascade_id, lambda c: c["status"] != "running")

        assert cascade["status"] == "failed"
        root = member(cascade, "network")
        for leaf in leaves:
            state = member(cascade, leaf)
            assert (state["status"], state["version"]) == ("succeeded", 1)
            assert state["started"] >= root["finished"]
            listed = api.get(f"/api/stacks/{org}/{leaf}/prod/deployments").json()["deployments"]
            assert len(listed) == 1
        bare, after = member(cascade, "bare"), member(cascade, "after")
        assert bare["status"] == "failed" and "no source for stack" in bare["reason"]
        assert after["status"] == "skipped" and "bare/prod" in after["reason"]
