"""Cascade extensions over real HTTP: impact plans, the graph, external update events, stack gates, errors."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx2
import pytest

from tests.support import LiveServer, assert_error

DIAMOND = [("network", "database"), ("network", "cluster"), ("database", "app"), ("cluster", "app")]


@pytest.fixture
def diamond(admin: httpx2.Client, org: str) -> str:
    for project in ("network", "database", "cluster", "app"):
        assert admin.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
        settings = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere", "branch": "main"}}}
        assert admin.post(f"/api/stacks/{org}/{project}/prod/deployments/settings", json=settings).status_code == 200
    for up, down in DIAMOND:
        edge: dict[str, Any] = {
            "format": "pulumi_deployments",
            "payloadUrl": f"{down}/prod",
            "filters": ["update_succeeded"],
        }
        if (up, down) == ("network", "database"):
            edge["triggerOn"] = "outputs-changed"
        assert admin.post(f"/api/stacks/{org}/{up}/prod/hooks", json=edge).status_code == 201
    return org


def test_the_impact_plan_shows_members_and_waves_without_running_anything(admin: httpx2.Client, diamond: str) -> None:
    response = admin.get(f"/api/stacks/{diamond}/network/prod/cascade-plan")
    assert response.headers["content-type"] == "application/json"
    plan = response.json()
    assert plan["root"] == "network/prod" and plan["operation"] == "update"
    assert plan["members"] == ["network/prod", "cluster/prod", "database/prod", "app/prod"]
    assert plan["waves"] == [["network/prod"], ["cluster/prod", "database/prod"], ["app/prod"]]
    pairs = [("cluster", "app"), ("database", "app"), ("network", "cluster"), ("network", "database")]
    assert plan["edges"] == [
        {
            "upstream": f"{up}/prod",
            "downstream": f"{down}/prod",
            "filters": ["update_succeeded"],
            "groups": [],
            "triggerOn": "outputs-changed" if (up, down) == ("network", "database") else "always",
            "requireApproval": False,
        }
        for up, down in pairs
    ]
    assert admin.get(f"/api/stacks/{diamond}/app/prod/cascade-plan").json() == {
        "root": None,
        "operation": "update",
        "members": [],
        "waves": [],
        "edges": [],
    }
    preview = admin.get(f"/api/stacks/{diamond}/network/prod/cascade-plan", params={"operation": "preview"})
    assert preview.json()["root"] is None
    assert admin.get(f"/api/stacks/{diamond}/network/prod/deployments").json()["deployments"] == []
    assert "operation" in assert_error(
        admin.get(f"/api/stacks/{diamond}/network/prod/cascade-plan", params={"operation": "nuke"}), 400
    )
    assert_error(admin.get(f"/api/stacks/{diamond}/nowhere/prod/cascade-plan"), 404)


def test_the_earlier_plan_path_answers_as_cascade_plan_does(admin: httpx2.Client, diamond: str) -> None:
    for stack in ("network", "database", "app"):
        earlier = admin.get(f"/api/stacks/{diamond}/{stack}/prod/plan")
        assert earlier.status_code == 200
        assert earlier.json() == admin.get(f"/api/stacks/{diamond}/{stack}/prod/cascade-plan").json()
    paths = admin.get("/api/openapi.json").json()["paths"]
    assert paths["/api/stacks/{org}/{project}/{stack}/plan"]["get"]["deprecated"] is True


def test_an_impact_plan_follows_a_new_edge_at_once(admin: httpx2.Client, diamond: str) -> None:
    before = admin.get(f"/api/stacks/{diamond}/network/prod/cascade-plan").json()
    assert admin.post(f"/api/stacks/{diamond}/cache", json={"stackName": "prod"}).status_code == 200
    edge = {"format": "pulumi_deployments", "payloadUrl": "cache/prod"}
    assert admin.post(f"/api/stacks/{diamond}/app/prod/hooks", json=edge).status_code == 201
    after = admin.get(f"/api/stacks/{diamond}/network/prod/cascade-plan").json()
    assert after["waves"] == [*before["waves"], ["cache/prod"]]
    assert after["edges"][0] == {
        "upstream": "app/prod",
        "downstream": "cache/prod",
        "filters": [],
        "groups": [],
        "triggerOn": "always",
        "requireApproval": False,
    }


def test_the_graph_lists_every_stack_and_edge(admin: httpx2.Client, diamond: str) -> None:
    graph = admin.get(f"/api/orgs/{diamond}/graph").json()
    assert [n["stack"] for n in graph["nodes"]] == ["app/prod", "cluster/prod", "database/prod", "network/prod"]
    assert all(n["lastStatus"] is None for n in graph["nodes"])
    assert [(e["upstream"], e["downstream"], e["triggerOn"]) for e in graph["edges"]] == [
        ("cluster/prod", "app/prod", "always"),
        ("database/prod", "app/prod", "always"),
        ("network/prod", "cluster/prod", "always"),
        ("network/prod", "database/prod", "outputs-changed"),
    ]


def test_an_external_update_records_outputs_and_starts_a_cascade(admin: httpx2.Client, diamond: str) -> None:
    events = f"/api/stacks/{diamond}/network/prod/events"
    first = admin.post(
        events, json={"kind": "update_succeeded", "outputs": {"vpc": "vpc-1", "key": {"secret": "k-123"}}}
    )
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["kind"] == "update_succeeded" and body["outputsChanged"] is True and body["cascadeId"]
    outputs = admin.get(f"/api/stacks/{diamond}/network/prod/outputs").json()["outputs"]
    assert outputs == {"key": "[secret]", "vpc": "vpc-1"}
    cascade = admin.get(f"/api/orgs/{diamond}/cascades/{body['cascadeId']}").json()
    state = {m["stack"]: m["status"] for m in cascade["members"]}
    assert state == {
        "network/prod": "succeeded",
        "cluster/prod": "queued",
        "database/prod": "queued",
        "app/prod": "waiting",
    }
    assert cascade["rootDeploymentId"] is None
    # The same outputs again: the outputs-changed edge to database is pruned, cluster still deploys.
    second = admin.post(
        events, json={"kind": "update_succeeded", "outputs": {"vpc": "vpc-1", "key": {"secret": "k-123"}}}
    ).json()
    assert second["outputsChanged"] is False
    members = {
        m["stack"]: (m["status"], m["reason"])
        for m in admin.get(f"/api/orgs/{diamond}/cascades/{second['cascadeId']}").json()["members"]
    }
    assert members["database/prod"] == ("skipped", "outputs of network/prod unchanged")
    assert members["cluster/prod"][0] == "queued"


def test_an_external_event_matches_keys_case_insensitively_and_reads_null_as_not_given(
    admin: httpx2.Client, diamond: str
) -> None:
    events = f"/api/stacks/{diamond}/network/prod/events"
    body = {"Kind": "update_succeeded", "Outputs": {"vpc": "vpc-9"}, "RESOURCECHANGES": {"update": 1}}
    answered = admin.post(events, json=body)
    assert answered.status_code == 202, answered.text
    assert answered.json()["outputsChanged"] is True
    assert admin.get(f"/api/stacks/{diamond}/network/prod/outputs").json()["outputs"] == {"vpc": "vpc-9"}
    refused = admin.post(events, json={"kind": "update_failed", "OUTPUTS": {"vpc": "vpc-10"}})
    assert "outputs are recorded only with kind update_succeeded" in assert_error(refused, 400)
    nulls = admin.post(events, json={"kind": "update_succeeded", "outputs": None, "resourceChanges": None})
    assert nulls.status_code == 202, nulls.text
    assert nulls.json()["outputsChanged"] is False, "no outputs given: the stored ones stay"
    assert admin.get(f"/api/stacks/{diamond}/network/prod/outputs").json()["outputs"] == {"vpc": "vpc-9"}


def test_an_external_event_no_outgoing_edge_listens_to_starts_no_cascade(admin: httpx2.Client, diamond: str) -> None:
    # The diamond's edges listen to update_succeeded only.
    body = admin.post(f"/api/stacks/{diamond}/network/prod/events", json={"kind": "update_failed"}).json()
    assert body["cascadeId"] is None
    # An edge that could fire for an update, but on an event an external update does not emit.
    assert admin.post(f"/api/stacks/{diamond}/audit", json={"stackName": "prod"}).status_code == 200
    edge = {"format": "pulumi_deployments", "payloadUrl": "audit/prod", "filters": ["deployment_succeeded"]}
    assert admin.post(f"/api/stacks/{diamond}/network/prod/hooks", json=edge).status_code == 201
    body = admin.post(f"/api/stacks/{diamond}/network/prod/events", json={"kind": "update_failed"}).json()
    assert body["cascadeId"] is None
    assert admin.get(f"/api/orgs/{diamond}/cascades").json()["cascades"] == []


@pytest.mark.parametrize("listens", [{"filters": ["update_failed"]}, {"groups": ["stacks"]}, {}])
def test_a_failed_external_update_cascades_over_the_edges_that_listen_to_it(
    admin: httpx2.Client, diamond: str, listens: dict[str, Any]
) -> None:
    assert admin.post(f"/api/stacks/{diamond}/alerts", json={"stackName": "prod"}).status_code == 200
    settings = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere", "branch": "main"}}}
    assert admin.post(f"/api/stacks/{diamond}/alerts/prod/deployments/settings", json=settings).status_code == 200
    edge = {"format": "pulumi_deployments", "payloadUrl": "alerts/prod", **listens}
    assert admin.post(f"/api/stacks/{diamond}/network/prod/hooks", json=edge).status_code == 201
    body = admin.post(f"/api/stacks/{diamond}/network/prod/events", json={"kind": "update_failed"}).json()
    assert body["cascadeId"]
    cascade = admin.get(f"/api/orgs/{diamond}/cascades/{body['cascadeId']}").json()
    state = {m["stack"]: m["status"] for m in cascade["members"]}
    assert state == {
        "network/prod": "failed",
        "alerts/prod": "queued",
        "cluster/prod": "skipped",
        "database/prod": "skipped",
        "app/prod": "skipped",
    }


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"kind": "exploded"}, "kind must be one of"),
        ({"kind": ["update_succeeded"]}, "kind must be one of"),
        ({"kind": {"a": 1}}, "kind must be one of"),
        ({}, "kind must be one of"),
        (
            {"kind": "update_succeeded", "outputs": {"a": {"secret": {"b": [1]}}}, "resourceChanges": [1]},
            "resourceChanges",
        ),
        ({"kind": "update_succeeded", "resourceChanges": {"create": True}}, "resourceChanges"),
        ({"kind": "update_failed", "outputs": {"a": 1}}, "only with kind update_succeeded"),
        ({"kind": "update_succeeded", "outputs": [1, 2]}, "JSON object"),
        ({"kind": "update_succeeded", "resourceChanges": {"create": -1}}, "resourceChanges"),
    ],
)
def test_bad_external_events_are_refused_and_change_nothing(
    admin: httpx2.Client, diamond: str, body: dict[str, Any], fragment: str
) -> None:
    assert fragment in assert_error(admin.post(f"/api/stacks/{diamond}/network/prod/events", json=body), 400)
    assert admin.get(f"/api/orgs/{diamond}/cascades").json()["cascades"] == []


def test_a_stack_gate_holds_the_stack_in_every_cascade(admin: httpx2.Client, diamond: str) -> None:
    url = f"/api/stacks/{diamond}/cluster/prod/cascadesettings"
    assert admin.get(url).json() == {"requireApproval": False}
    assert admin.patch(url, json={"requireApproval": True}).json() == {"requireApproval": True}
    assert "true or false" in assert_error(admin.patch(url, json={"requireApproval": "yes"}), 400)
    body = admin.post(f"/api/stacks/{diamond}/network/prod/events", json={"kind": "update_succeeded"}).json()
    cascade = admin.get(f"/api/orgs/{diamond}/cascades/{body['cascadeId']}").json()
    cluster = next(m for m in cascade["members"] if m["stack"] == "cluster/prod")
    assert (cluster["status"], cluster["reason"]) == ("awaiting-approval", "cluster/prod requires approval")
    rejected = admin.post(f"/api/orgs/{diamond}/cascades/{body['cascadeId']}/members/cluster/prod/reject").json()
    assert next(m for m in rejected["members"] if m["stack"] == "cluster/prod")["reason"].startswith("rejected by")


def test_a_stack_gate_patch_matches_keys_case_insensitively_and_ignores_nulls_and_unknown_keys(
    admin: httpx2.Client, diamond: str, live_server: LiveServer
) -> None:
    url = f"/api/stacks/{diamond}/cluster/prod/cascadesettings"
    assert admin.patch(url, json={"requireapproval": True}).json() == {"requireApproval": True}
    assert admin.patch(url, json={"requireApproval": None}).json() == {"requireApproval": True}  # unchanged
    assert admin.patch(url, json={}).json() == {"requireApproval": True}
    assert admin.patch(url, json={"requireAproval": False}).json() == {"requireApproval": True}  # ignored
    assert admin.get(url).json() == {"requireApproval": True}
    created = admin.post("/api/tokens", json={"org": diamond, "role": "viewer"})
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"token {created.json()['token']}"}
    with httpx2.Client(base_url=live_server.url, headers=headers, timeout=30) as viewer:
        assert_error(viewer.patch(url, json={}), 403)  # even a patch that changes nothing needs a member


def test_cascade_mode_is_an_org_setting(admin: httpx2.Client, diamond: str) -> None:
    read = admin.get(f"/api/orgs/{diamond}/settings").json()
    assert (read["cascadeMode"], read["concurrency"]) == (
        "coalesced",
        admin.get(f"/api/orgs/{diamond}/deployments/metadata").json()["concurrency"],
    )
    assert (
        admin.patch(f"/api/orgs/{diamond}/settings", json={"cascadeMode": "per-edge"}).json()["cascadeMode"]
        == "per-edge"
    )
    assert "cascadeMode" in assert_error(
        admin.patch(f"/api/orgs/{diamond}/settings", json={"cascadeMode": "chaos"}), 400
    )
    assert admin.get(f"/api/orgs/{diamond}/settings").json()["cascadeMode"] == "per-edge"  # the 400 changed nothing
    body = admin.post(f"/api/stacks/{diamond}/network/prod/events", json={"kind": "update_succeeded"}).json()
    assert body["cascadeId"] is None
    assert "not found" in assert_error(admin.get(f"/api/orgs/{diamond}-typo/settings"), 404)


def test_cascades_are_listed_page_by_page_newest_first(admin: httpx2.Client, diamond: str) -> None:
    started = [
        admin.post(f"/api/stacks/{diamond}/network/prod/events", json={"kind": "update_succeeded"}).json()["cascadeId"]
        for _ in range(5)
    ]
    seen: list[str] = []
    params: dict[str, Any] = {"pageSize": 2}
    for _ in range(5):
        page = admin.get(f"/api/orgs/{diamond}/cascades", params=params).json()
        assert len(page["cascades"]) <= 2
        seen += [c["id"] for c in page["cascades"]]
        if "continuationToken" not in page:
            break
        params["continuationToken"] = page["continuationToken"]
    assert sorted(seen) == sorted(started) and len(seen) == 5  # each once, none lost between pages
    created = [c["created"] for c in admin.get(f"/api/orgs/{diamond}/cascades").json()["cascades"]]
    assert created == sorted(created, reverse=True)
    forged = [json.dumps([10**400, started[0]]), json.dumps([1.0, "a\u0000b"]), json.dumps([1.0, {}]), "not-a-token"]
    for token in forged:
        token = token if token == "not-a-token" else base64.urlsafe_b64encode(token.encode()).decode()
        bad = admin.get(f"/api/orgs/{diamond}/cascades", params={"continuationToken": token})
        assert "continuationToken" in assert_error(bad, 400)


def test_a_cascade_tells_which_edges_fired_which_did_not_and_why_and_which_wait(
    admin: httpx2.Client, diamond: str
) -> None:
    event = {"kind": "update_succeeded", "outputs": {"vpc": "v1"}}
    admin.post(f"/api/stacks/{diamond}/network/prod/events", json=event)
    again = admin.post(f"/api/stacks/{diamond}/network/prod/events", json=event).json()  # same outputs
    assert again["outputsChanged"] is False
    cascade = admin.get(f"/api/orgs/{diamond}/cascades/{again['cascadeId']}").json()
    edges = {(e["upstream"], e["downstream"]): (e["fired"], e["reason"]) for e in cascade["edges"]}
    assert edges == {
        ("network/prod", "cluster/prod"): (True, None),
        ("network/prod", "database/prod"): (False, "outputs of network/prod unchanged"),  # outputs-changed edge
        ("database/prod", "app/prod"): (False, "database/prod was skipped"),
        ("cluster/prod", "app/prod"): (None, None),  # cluster is queued (no runner here): not decided yet
    }
    assert {e["triggerOn"] for e in cascade["edges"]} == {"always", "outputs-changed"}  # the plan's fields stay


def test_cascades_are_listed_by_status_page_by_page(admin: httpx2.Client, diamond: str) -> None:
    started = {
        admin.post(f"/api/stacks/{diamond}/network/prod/events", json={"kind": "update_succeeded"}).json()["cascadeId"]
        for _ in range(3)
    }  # no runner here: each stays running, its members queued
    seen: list[str] = []
    params: dict[str, Any] = {"pageSize": 2, "status": "running"}
    for _ in range(3):
        page = admin.get(f"/api/orgs/{diamond}/cascades", params=params).json()
        assert {c["status"] for c in page["cascades"]} == {"running"}
        seen += [c["id"] for c in page["cascades"]]
        if "continuationToken" not in page:
            break
        params["continuationToken"] = page["continuationToken"]
    assert sorted(seen) == sorted(started)
    for finished in ("succeeded", "failed", "succeeded,failed", " failed , succeeded"):
        assert admin.get(f"/api/orgs/{diamond}/cascades", params={"status": finished}).json() == {"cascades": []}
    both = admin.get(f"/api/orgs/{diamond}/cascades", params={"status": "failed,running"}).json()
    assert {c["id"] for c in both["cascades"]} == started
    for bad in ("done", "running,RUNNING", ""):
        message = assert_error(admin.get(f"/api/orgs/{diamond}/cascades", params={"status": bad}), 400)
        assert "running, succeeded, failed" in message, message


def test_an_unknown_or_invalid_organization_is_not_read_as_an_empty_one(admin: httpx2.Client, diamond: str) -> None:
    for path in ("cascades", "graph"):
        assert "not found" in assert_error(admin.get(f"/api/orgs/{diamond}-typo/{path}"), 404)
        assert_error(admin.get(f"/api/orgs/a%20b/{path}"), 400)


def test_unknown_cascades_and_members_answer_404(admin: httpx2.Client, diamond: str) -> None:
    assert_error(admin.get(f"/api/orgs/{diamond}/cascades/not-a-cascade"), 404)
    body = admin.post(f"/api/stacks/{diamond}/network/prod/events", json={"kind": "update_succeeded"}).json()
    assert_error(admin.post(f"/api/orgs/{diamond}/cascades/{body['cascadeId']}/members/nope/prod/approve"), 404)
    assert "awaiting approval" in assert_error(
        admin.post(f"/api/orgs/{diamond}/cascades/{body['cascadeId']}/members/cluster/prod/approve"), 409
    )
