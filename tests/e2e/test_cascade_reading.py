"""Reading cascades end to end with real runners (both databases): the impact plan against the cascade that
then runs, a cascade's members with their deployments and timings, its edges, and the org graph after it."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.helpers import (
    DIAMOND,
    broken_database_repo,
    cascade_of,
    cascade_yaml,
    deploy,
    ended,
    git_repo,
    graph,
    member,
    wait_cascade,
)
from tests.support import LiveServer


def test_the_impact_plan_runs_nothing_and_names_the_cascade_a_change_then_sets_off(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update="echo ok")})
    with pool_server.client() as api:
        graph(api, org, repo, [*DIAMOND, ("app", "smoke")], gated=("app", "smoke"))
        plan = api.get(f"/api/stacks/{org}/network/prod/cascade-plan").json()
        assert plan["members"] == ["network/prod", "cluster/prod", "database/prod", "app/prod", "smoke/prod"]
        assert plan["waves"] == [["network/prod"], ["cluster/prod", "database/prod"], ["app/prod"], ["smoke/prod"]]
        counts = api.get(f"/api/orgs/{org}/deployments/metadata").json()["deploymentCounts"]
        assert counts["total"] == 0  # nothing was queued, let alone run
        assert api.get(f"/api/orgs/{org}/cascades").json()["cascades"] == []

        cascade_id = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        cascade = wait_cascade(api, org, cascade_id, lambda c: member(c, "smoke")["status"] == "awaiting-approval")
        assert [m["stack"] for m in cascade["members"]] == plan["members"]
        assert cascade["waves"] == plan["waves"]
        assert [(e["upstream"], e["downstream"], e["requireApproval"]) for e in cascade["edges"]] == [
            (e["upstream"], e["downstream"], e["requireApproval"]) for e in plan["edges"]
        ]
        assert api.post(f"/api/orgs/{org}/cascades/{cascade_id}/members/smoke/prod/reject").status_code == 200
        assert wait_cascade(api, org, cascade_id, ended)["status"] == "succeeded"


def test_a_cascade_links_each_member_to_its_deployment_with_its_timings_and_reasons(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo, _ = broken_database_repo(tmp_path)
    with pool_server.client() as api:
        graph(api, org, repo, DIAMOND)
        cascade_id = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        cascade = wait_cascade(api, org, cascade_id, ended)
        assert cascade["status"] == "failed" and cascade["finished"] and cascade["root"] == "network/prod"
        assert [(m["stack"], m["wave"]) for m in cascade["members"]] == [
            ("network/prod", 0),
            ("cluster/prod", 1),
            ("database/prod", 1),
            ("app/prod", 2),
        ]
        for project in ("network", "cluster", "database"):
            state = member(cascade, project)
            deployment = api.get(f"/api/stacks/{org}/{project}/prod/deployments/{state['deploymentId']}").json()
            assert deployment["cascadeId"] == cascade_id
            assert (deployment["status"], deployment["version"]) == (state["status"], state["version"])
            assert (deployment["started"], deployment["finished"]) == (state["started"], state["finished"])
            assert state["started"] <= state["finished"]
        assert member(cascade, "database")["reason"]  # the failure says why
        app = member(cascade, "app")
        assert (app["status"], app["reason"], app["deploymentId"], app["started"]) == (
            "skipped",
            "upstream database/prod failed",
            None,
            None,
        )
        listed = api.get(f"/api/orgs/{org}/cascades", params={"status": "failed"}).json()["cascades"]
        assert [(c["id"], c["root"], c["status"]) for c in listed] == [(cascade_id, "network/prod", "failed")]
        assert api.get(f"/api/orgs/{org}/cascades", params={"status": "running"}).json()["cascades"] == []

        nodes = {n["stack"]: n["lastStatus"] for n in api.get(f"/api/orgs/{org}/graph").json()["nodes"]}
        assert nodes == {
            "network/prod": "succeeded",
            "cluster/prod": "succeeded",
            "database/prod": "failed",
            "app/prod": None,  # skipped members are not deployed
        }


def test_a_cascade_says_which_of_its_edges_fired(pool_server: LiveServer, org: str, tmp_path: Path) -> None:
    repo, _ = broken_database_repo(tmp_path)
    with pool_server.client() as api:
        graph(api, org, repo, DIAMOND)
        cascade = wait_cascade(api, org, cascade_of(api, org, deploy(api, f"{org}/network/prod")), ended)
        assert cascade["status"] == "failed"
        fired = {(e["upstream"], e["downstream"]): (e["fired"], e["reason"]) for e in cascade["edges"]}
        assert fired == {
            ("network/prod", "cluster/prod"): (True, None),
            ("network/prod", "database/prod"): (True, None),
            ("cluster/prod", "app/prod"): (True, None),
            ("database/prod", "app/prod"): (False, "database/prod failed"),
        }
