"""Approval gates on a stack, and external update events, end to end: a real server with real local runners
(command runtime) on both databases. tests/e2e/test_cascades.py has the edge gate approved over the API and an
external update_succeeded; this adds the stack gate with a rejection and an approval, what an external event
stores and emits, and an external update_failed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    DIAMOND,
    all_logs,
    cascade_of,
    cascade_yaml,
    deploy,
    ended,
    git_repo,
    graph,
    member,
    wait_cascade,
)
from tests.support import DATABASES, LiveServer, serving
from tests.webhook_receiver import receiving


@pytest.fixture(scope="module", params=DATABASES)
def loopback_pool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real server with two local runners that may deliver webhooks to loopback (one per module and database)."""
    data_dir = tmp_path_factory.mktemp("loopback-pool")
    with serving(request.param, data_dir, runners=2, webhook_allow_networks="127.0.0.0/8") as server:
        yield server


def test_a_stack_gate_holds_its_member_and_a_rejection_skips_it_while_the_other_branch_deploys_app(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update="echo deployed $CASCADE_PROJECT")})
    with pool_server.client() as api:
        graph(api, org, repo, DIAMOND)
        gate = api.patch(f"/api/stacks/{org}/database/prod/cascadesettings", json={"requireApproval": True})
        assert gate.json() == {"requireApproval": True}

        first = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        held = wait_cascade(
            api,
            org,
            first,
            lambda c: (
                member(c, "database")["status"] == "awaiting-approval" and member(c, "cluster")["status"] == "succeeded"
            ),
        )
        assert member(held, "database")["deploymentId"] is None
        assert member(held, "app")["status"] == "waiting"  # app waits for database, whatever cluster did
        assert api.get(f"/api/stacks/{org}/database/prod/deployments").json()["deployments"] == []
        rejected = api.post(f"/api/orgs/{org}/cascades/{first}/members/database/prod/reject")
        assert rejected.status_code == 200, rejected.text
        done = wait_cascade(api, org, first, ended)
        assert done["status"] == "succeeded"  # a rejection is a skip, not a failure
        database, app = member(done, "database"), member(done, "app")
        assert database["status"] == "skipped" and database["reason"].startswith("rejected by ")
        assert database["deploymentId"] is None
        assert (app["status"], app["version"]) == ("succeeded", 1)  # cluster's edge fired it
        assert app["started"] >= member(done, "cluster")["finished"]

        second = cascade_of(api, org, deploy(api, f"{org}/network/prod"))
        wait_cascade(api, org, second, lambda c: member(c, "database")["status"] == "awaiting-approval")
        approved = api.post(f"/api/orgs/{org}/cascades/{second}/members/database/prod/approve")
        assert approved.status_code == 200, approved.text
        done = wait_cascade(api, org, second, ended)
        assert done["status"] == "succeeded"
        database, app = member(done, "database"), member(done, "app")
        assert (database["status"], database["version"]) == ("succeeded", 1)
        assert database["approvedBy"] and database["reason"] is None
        assert app["started"] >= max(database["finished"], member(done, "cluster")["finished"])
        assert len(api.get(f"/api/stacks/{org}/app/prod/deployments").json()["deployments"]) == 2  # once each


def test_an_external_update_stores_its_outputs_emits_its_event_and_hands_the_outputs_to_the_members(
    loopback_pool: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = git_repo(
        tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update='echo "seen $(cat "$CASCADE_UPSTREAM_OUTPUTS")"')}
    )
    with loopback_pool.client() as api, receiving() as receiver:
        graph(api, org, repo, DIAMOND)
        hook = {"name": "audit", "payloadUrl": receiver.url, "filters": ["update_succeeded"]}
        assert api.post(f"/api/orgs/{org}/hooks", json=hook).status_code == 201
        event = {"kind": "update_succeeded", "outputs": {"vpc": "vpc-from-ci"}, "resourceChanges": {"update": 2}}
        accepted = api.post(f"/api/stacks/{org}/network/prod/events", json=event)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["outputsChanged"] is True
        cascade_id = accepted.json()["cascadeId"]
        cascade = wait_cascade(api, org, cascade_id, ended)
        assert cascade["status"] == "succeeded" and cascade["rootDeploymentId"] is None

        assert api.get(f"/api/stacks/{org}/network/prod/outputs").json()["outputs"] == {"vpc": "vpc-from-ci"}
        database = member(cascade, "database")
        log = "\n".join(line["line"] for line in all_logs(api, f"{org}/database/prod", database["deploymentId"]))
        assert '"network/prod"' in log[log.index("seen ") :] and '"vpc-from-ci"' in log[log.index("seen ") :], log

        # The raw webhook saw the external update as it sees a deployment's, and each member's own update:
        # the members' ordinary webhooks are delivered though their events start no cascade.
        received = [json.loads(r.body) for r in receiver.wait_for(4)]
        updates = {(body["projectName"], body["kind"], body["result"]) for body in received}
        assert updates == {(project, "update", "succeeded") for project in ("network", "database", "cluster", "app")}
        external = next(body for body in received if body["projectName"] == "network")
        assert external["resourceChanges"] == {"update": 2}
        members = [body for body in received if body["projectName"] != "network"]
        assert {body.get("cascadeId") for body in members} == {cascade_id}
        assert [c["id"] for c in api.get(f"/api/orgs/{org}/cascades").json()["cascades"]] == [cascade_id]


def test_an_external_update_failed_cascades_only_over_the_edges_that_listen_to_failures(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update="echo deployed $CASCADE_PROJECT")})
    with pool_server.client() as api:
        graph(api, org, repo, [("network", "database")])  # on update_succeeded
        graph(api, org, repo, [("rollback", "notify")])
        rollback = {"format": "pulumi_deployments", "payloadUrl": "rollback/prod", "filters": ["update_failed"]}
        assert api.post(f"/api/stacks/{org}/network/prod/hooks", json=rollback).status_code == 201
        before = api.get(f"/api/stacks/{org}/network/prod/outputs").json()

        accepted = api.post(f"/api/stacks/{org}/network/prod/events", json={"kind": "update_failed"})
        assert accepted.status_code == 202, accepted.text
        cascade = wait_cascade(api, org, accepted.json()["cascadeId"], ended)
        assert cascade["status"] == "failed"  # its root failed (outside stackcascade)
        assert {m["stack"]: (m["status"], m["version"], m["reason"]) for m in cascade["members"]} == {
            "network/prod": ("failed", None, None),
            "rollback/prod": ("succeeded", 1, None),
            "notify/prod": ("succeeded", 1, None),  # rollback's own update_succeeded fires its edge
            "database/prod": ("skipped", None, "upstream network/prod failed"),
        }
        assert api.get(f"/api/stacks/{org}/database/prod/deployments").json()["deployments"] == []
        assert api.get(f"/api/stacks/{org}/network/prod/outputs").json() == before  # a failure stores no outputs
