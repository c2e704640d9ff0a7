"""Cascade rules end to end that tests/e2e/test_cascades.py does not show: the plan visible while the root
runs, edges added mid-cascade, parallel branches, the per-stack queue, skip propagation, concurrent roots and
``skipIntermediateDeployments`` — on a real server with real local runners (command runtime), both databases.

Deployments that must be held (a root still running, a stack kept busy) wait in their shell for a release
file, bounded in time; the tests wait for conditions with bounded polling, never for a fixed time."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx2

from tests.e2e.helpers import (
    DIAMOND,
    cascade_of,
    cascade_yaml,
    deploy,
    ended,
    git_repo,
    graph,
    member,
    wait_cascade,
    wait_for,
)
from tests.support import LiveServer


def held_repo(tmp_path: Path, *, hold: str = "", outputs: str = "") -> str:
    """A repository whose update, on the projects in ``hold`` (space-separated), waits for the file
    ``release-<project>-v<version>`` in ``tmp_path`` (at most 60 s, then fails); every update writes
    ``outputs`` (JSON) as its outputs when given."""
    update = f"""
case " {hold} " in
  *" $CASCADE_PROJECT "*)
    release="{tmp_path}/release-$CASCADE_PROJECT-v$CASCADE_VERSION"
    for i in $(seq 600); do [ -f "$release" ] && break; sleep 0.1; done
    [ -f "$release" ] || {{ echo "never released"; exit 7; }}
    ;;
esac
echo "deployed $CASCADE_PROJECT v$CASCADE_VERSION"
"""
    if outputs:
        update += f"echo '{outputs}' > \"$CASCADE_OUTPUTS\"\n"
    return git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)})


def new_stack(api: httpx2.Client, org: str, project: str, repo: str) -> None:
    assert api.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
    settings = {"sourceContext": {"git": {"repoUrl": repo, "branch": "main"}}}
    assert api.post(f"/api/stacks/{org}/{project}/prod/deployments/settings", json=settings).status_code == 200


def new_edge(api: httpx2.Client, org: str, up: str, down: str, **extra: object) -> None:
    body = {"format": "pulumi_deployments", "payloadUrl": f"{down}/prod", "filters": ["update_succeeded"], **extra}
    response = api.post(f"/api/stacks/{org}/{up}/prod/hooks", json=body)
    assert response.status_code == 201, response.text


def release(tmp_path: Path, project: str, version: int) -> None:
    (tmp_path / f"release-{project}-v{version}").touch()


def deployments_of(api: httpx2.Client, org: str, project: str) -> list[dict[str, Any]]:
    return list(api.get(f"/api/stacks/{org}/{project}/prod/deployments").json()["deployments"])


def test_the_planned_members_wait_visibly_while_the_root_still_runs(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = held_repo(tmp_path, hold="network")
    with pool_server.client() as api:
        graph(api, org, repo, DIAMOND)
        root = deploy(api, f"{org}/network/prod")
        wait_for(api, f"{org}/network/prod", root, statuses={"running"})
        cascade_id = cascade_of(api, org, root)
        running = api.get(f"/api/orgs/{org}/cascades/{cascade_id}").json()
        assert running["status"] == "running"
        assert running["waves"] == [["network/prod"], ["cluster/prod", "database/prod"], ["app/prod"]]
        assert [(m["stack"], m["status"], m["deploymentId"]) for m in running["members"][1:]] == [
            ("cluster/prod", "waiting", None),
            ("database/prod", "waiting", None),
            ("app/prod", "waiting", None),
        ]
        assert member(running, "network")["status"] == "running"
        for project in ("database", "cluster", "app"):
            assert deployments_of(api, org, project) == []  # planned, not yet deployed
        release(tmp_path, "network", 1)
        cascade = wait_cascade(api, org, cascade_id, ended)
        assert cascade["status"] == "succeeded"
        assert {m["status"] for m in cascade["members"]} == {"succeeded"}


def test_an_edge_added_while_the_cascade_runs_does_not_join_it(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = held_repo(tmp_path, hold="network")
    with pool_server.client() as api:
        graph(api, org, repo, [("network", "database")])
        root = deploy(api, f"{org}/network/prod")
        wait_for(api, f"{org}/network/prod", root, statuses={"running"})
        cascade_id = cascade_of(api, org, root)
        new_stack(api, org, "late", repo)  # mid-cascade: a new stack, edges to it from a member and the root
        new_edge(api, org, "database", "late")
        new_edge(api, org, "network", "late")
        release(tmp_path, "network", 1)
        cascade = wait_cascade(api, org, cascade_id, ended)
        assert cascade["status"] == "succeeded"
        assert [m["stack"] for m in cascade["members"]] == ["network/prod", "database/prod"]
        assert len(deployments_of(api, org, "database")) == 1
        assert deployments_of(api, org, "late") == []  # neither the root's nor the member's new edge fired
        assert [c["id"] for c in api.get(f"/api/orgs/{org}/cascades").json()["cascades"]] == [cascade_id]
        # The next cascade is planned with the new edges.
        plan = api.get(f"/api/stacks/{org}/network/prod/cascade-plan").json()
        assert plan["waves"] == [["network/prod"], ["database/prod"], ["late/prod"]]


def test_independent_branches_run_at_the_same_time(pool_server: LiveServer, org: str, tmp_path: Path) -> None:
    # database and cluster each wait until the other one has started: both succeed only if they overlap.
    update = f"""
echo started > "{tmp_path}/started-$CASCADE_PROJECT"
other=""
[ "$CASCADE_PROJECT" = database ] && other=cluster
[ "$CASCADE_PROJECT" = cluster ] && other=database
if [ -n "$other" ]; then
  for i in $(seq 600); do [ -f "{tmp_path}/started-$other" ] && break; sleep 0.1; done
  [ -f "{tmp_path}/started-$other" ] || {{ echo "$other never started while $CASCADE_PROJECT ran"; exit 5; }}
fi
echo ok
"""
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)})
    with pool_server.client() as api:
        graph(api, org, repo, DIAMOND)
        cascade_id = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        cascade = wait_cascade(api, org, cascade_id, ended)
        assert cascade["status"] == "succeeded", cascade
        database, cluster, app = member(cascade, "database"), member(cascade, "cluster"), member(cascade, "app")
        assert database["started"] < cluster["finished"] and cluster["started"] < database["finished"]
        assert app["started"] >= max(database["finished"], cluster["finished"])


def test_a_member_whose_stack_is_busy_waits_its_turn(pool_server: LiveServer, org: str, tmp_path: Path) -> None:
    repo = held_repo(tmp_path, hold="app")
    with pool_server.client() as api:
        graph(api, org, repo, [("network", "app")])
        own = deploy(api, f"{org}/app/prod")  # a deployment of app by hand, held running
        wait_for(api, f"{org}/app/prod", own, statuses={"running"})
        cascade_id = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        waiting = wait_cascade(api, org, cascade_id, lambda c: member(c, "app")["deploymentId"] is not None)
        queued = member(waiting, "app")
        assert queued["status"] == "queued" and queued["version"] == 2
        queued_deployment = api.get(f"/api/stacks/{org}/app/prod/deployments/{queued['deploymentId']}").json()
        assert queued_deployment["status"] == "not-started"  # a free runner does not take it: app is busy
        release(tmp_path, "app", 1)
        held = wait_for(api, f"{org}/app/prod", own)
        assert held["status"] == "succeeded"
        release(tmp_path, "app", 2)
        cascade = wait_cascade(api, org, cascade_id, ended)
        assert cascade["status"] == "succeeded"
        app = member(cascade, "app")
        assert (app["status"], app["version"]) == ("succeeded", 2)
        assert app["started"] >= held["finished"]  # RFC 3339 UTC sorts as text


def test_a_pruned_member_does_not_fire_while_an_always_edge_fires_on_the_same_outputs(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    # network -> database (outputs-changed) -> migrate; network -> cluster (always) -> app <- database.
    repo = held_repo(tmp_path, outputs='{"vpc": "vpc-fixed"}')
    with pool_server.client() as api:
        graph(
            api, org, repo, [("network", "cluster"), ("database", "migrate"), ("cluster", "app"), ("database", "app")]
        )
        new_edge(api, org, "network", "database", triggerOn="outputs-changed")
        first = wait_cascade(api, org, cascade_of(api, org, deploy(api, f"{org}/network/prod")), ended)
        assert {m["status"] for m in first["members"]} == {"succeeded"}  # network's outputs were new
        second = wait_cascade(api, org, cascade_of(api, org, deploy(api, f"{org}/network/prod")), ended)
        assert second["status"] == "succeeded"  # a pruned member does not fail its cascade
        states = {m["stack"]: (m["status"], m["reason"]) for m in second["members"]}
        assert states == {
            "network/prod": ("succeeded", None),
            "cluster/prod": ("succeeded", None),  # always: fires on the same outputs
            "database/prod": ("skipped", "outputs of network/prod unchanged"),
            "migrate/prod": ("skipped", "upstream database/prod skipped"),  # the skip does not fire its edge
            "app/prod": ("succeeded", None),  # cluster's edge fired; a skipped upstream does not stop it
        }
        assert [len(deployments_of(api, org, p)) for p in ("cluster", "database", "migrate", "app")] == [2, 1, 1, 2]


def test_two_roots_posted_at_the_same_moment_give_two_cascades_that_queue_their_shared_member(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = held_repo(tmp_path)
    with pool_server.client() as api:
        graph(api, org, repo, [("network", "app"), ("dns", "app")])
        barrier = threading.Barrier(2)
        roots: dict[str, str] = {}

        def post(project: str) -> None:
            with pool_server.client() as own:
                barrier.wait(timeout=10)
                roots[project] = deploy(own, f"{org}/{project}/prod")

        threads = [threading.Thread(target=post, args=(project,)) for project in ("network", "dns")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert set(roots) == {"network", "dns"}
        ids = [
            api.get(f"/api/stacks/{org}/{project}/prod/deployments/{roots[project]}").json()["cascadeId"]
            for project in ("network", "dns")
        ]
        assert None not in ids and ids[0] != ids[1]
        cascades = [wait_cascade(api, org, cascade_id, ended) for cascade_id in ids]
        apps = []
        for cascade in cascades:
            assert cascade["status"] == "succeeded"
            assert len(cascade["members"]) == 2 and cascade["members"][1]["stack"] == "app/prod"
            apps.append(cascade["members"][1])
        assert sorted(app["version"] for app in apps) == [1, 2]  # one deployment of app per cascade
        first, second = sorted(apps, key=lambda app: app["version"])
        assert second["started"] >= first["finished"]  # one after the other on the stack's queue
        assert len(deployments_of(api, org, "app")) == 2
        assert len(api.get(f"/api/orgs/{org}/cascades").json()["cascades"]) == 2


def test_with_skip_intermediate_deployments_the_older_member_and_its_descendants_are_skipped(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = held_repo(tmp_path, hold="database")
    with pool_server.client() as api:
        graph(api, org, repo, [("network", "database"), ("database", "app")])
        options = {"operationContext": {"options": {"skipIntermediateDeployments": True}}}
        assert api.post(f"/api/stacks/{org}/database/prod/deployments/settings", json=options).status_code == 200
        own = deploy(api, f"{org}/database/prod")  # keeps database busy while two cascades reach it
        wait_for(api, f"{org}/database/prod", own, statuses={"running"})
        older = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        newer = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        for cascade_id in (older, newer):
            wait_cascade(api, org, cascade_id, lambda c: member(c, "database")["status"] == "queued")
        release(tmp_path, "database", 1)  # its own cascade's app runs; the newer member supersedes the older
        for version in (2, 3):
            release(tmp_path, "database", version)
        superseded = wait_cascade(api, org, older, ended)
        assert member(superseded, "database")["status"] == "skipped"
        assert "superseded" in member(superseded, "database")["reason"]
        assert (member(superseded, "app")["status"], member(superseded, "app")["reason"]) == (
            "skipped",
            "upstream database/prod superseded by a newer deployment (skipIntermediateDeployments)",
        )
        assert member(superseded, "app")["deploymentId"] is None
        kept = wait_cascade(api, org, newer, ended)
        assert kept["status"] == "succeeded"
        assert {m["status"] for m in kept["members"]} == {"succeeded"}
        statuses = sorted(d["status"] for d in deployments_of(api, org, "database"))
        assert statuses == ["skipped", "succeeded", "succeeded"]  # by hand, the older (skipped), the newer
