"""``GET|PUT /api/orgs/{org}/autodeploy`` over real HTTP: the document, the diff, refusals as a whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.support import LiveServer, assert_error

DIAMOND = {
    "stacks": [
        {"project": "network", "stack": "prod", "downstreamRefs": ["database/prod", "cluster/prod"]},
        {"project": "database", "stack": "prod", "downstreamRefs": ["app/prod"]},
        {"project": "cluster", "stack": "prod", "downstreamRefs": ["app/prod"]},
        {"project": "app", "stack": "prod", "requireApproval": True, "downstreamRefs": []},
    ]
}


@pytest.fixture
def stacks(admin: httpx2.Client, org: str) -> str:
    for project in ("network", "database", "cluster", "app"):
        response = admin.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"})
        assert response.status_code == 200, response.text
    return org


@pytest.fixture
def viewer(live_server: LiveServer, admin: httpx2.Client, org: str) -> Iterator[httpx2.Client]:
    created = admin.post("/api/tokens", json={"org": org, "role": "viewer"})
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"token {created.json()['token']}"}
    with httpx2.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
        yield client


def hooks(admin: httpx2.Client, org: str, project: str) -> list[dict[str, Any]]:
    response = admin.get(f"/api/stacks/{org}/{project}/prod/hooks")
    assert response.status_code == 200, response.text
    return list(response.json())


def put(client: httpx2.Client, org: str, document: object, *, dry_run: bool | None = None) -> httpx2.Response:
    params = {} if dry_run is None else {"dryRun": "true" if dry_run else "false"}
    return client.put(f"/api/orgs/{org}/autodeploy", json=document, params=params)


def test_dry_run_then_apply_then_show(admin: httpx2.Client, stacks: str) -> None:
    org = stacks
    assert admin.get(f"/api/orgs/{org}/autodeploy").json() == {"stacks": []}

    preview = put(admin, org, DIAMOND, dry_run=True)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["applied"] is False
    assert set(body["diff"]) == {"create", "update", "delete", "unchanged", "gates"}
    assert [(e["upstream"], e["downstream"], e["webhook"]) for e in body["diff"]["create"]] == [
        ("cluster/prod", "app/prod", "autodeploy-app-prod"),
        ("database/prod", "app/prod", "autodeploy-app-prod"),
        ("network/prod", "cluster/prod", "autodeploy-cluster-prod"),
        ("network/prod", "database/prod", "autodeploy-database-prod"),
    ]
    assert body["diff"]["gates"] == [{"stack": "app/prod", "from": False, "to": True}]
    assert hooks(admin, org, "network") == []  # a dry run changes nothing

    applied = put(admin, org, DIAMOND)
    assert applied.status_code == 200, applied.text
    assert applied.json() == {"applied": True, "diff": body["diff"]}
    network = hooks(admin, org, "network")
    assert sorted((h["name"], h["format"], h["payloadUrl"], h["filters"]) for h in network) == [
        ("autodeploy-cluster-prod", "pulumi_deployments", "cluster/prod", ["update_succeeded"]),
        ("autodeploy-database-prod", "pulumi_deployments", "database/prod", ["update_succeeded"]),
    ]
    assert admin.get(f"/api/stacks/{org}/app/prod/cascadesettings").json() == {"requireApproval": True}
    graph = admin.get(f"/api/orgs/{org}/graph").json()
    assert sorted((e["upstream"], e["downstream"]) for e in graph["edges"]) == [
        ("cluster/prod", "app/prod"),
        ("database/prod", "app/prod"),
        ("network/prod", "cluster/prod"),
        ("network/prod", "database/prod"),
    ]

    shown = admin.get(f"/api/orgs/{org}/autodeploy")
    assert shown.status_code == 200
    document = shown.json()
    assert document["stacks"][0] == {"project": "app", "stack": "prod", "requireApproval": True, "downstreamRefs": []}
    again = put(admin, org, document).json()
    assert again["applied"] is True and len(again["diff"]["unchanged"]) == 4
    assert not any(again["diff"][key] for key in ("create", "update", "delete", "gates"))


def test_unknown_stacks_and_cycles_are_refused_with_nothing_changed(admin: httpx2.Client, stacks: str) -> None:
    org = stacks
    manual = {"name": "manual", "format": "pulumi_deployments", "payloadUrl": "network/prod"}
    assert admin.post(f"/api/stacks/{org}/app/prod/hooks", json=manual).status_code == 201
    unknown = {"stacks": [{"project": "network", "stack": "prod", "downstreamRefs": ["ghost/prod"]}]}
    message = assert_error(put(admin, org, unknown), 400)
    assert f"{org}/ghost/prod" in message and "nothing was changed" in message
    message = assert_error(put(admin, org, DIAMOND, dry_run=True), 409)
    assert "app/prod -> network/prod" in message and "'manual'" in message
    assert_error(put(admin, org, DIAMOND), 409)
    assert hooks(admin, org, "network") == []
    assert admin.get(f"/api/stacks/{org}/app/prod/cascadesettings").json() == {"requireApproval": False}
    assert [h["name"] for h in hooks(admin, org, "app")] == ["manual"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "needs a JSON object body"),
        (b"[]", "must be a JSON object"),
        (b"{}", "needs 'stacks'"),
        (b'{"stacks": [{"project": "a", "stack": "s", "downstreamRefs": ["b"]}]}', "stacks[0] (a/s).downstreamRefs[0]"),
    ],
)
def test_malformed_documents_are_400(admin: httpx2.Client, org: str, body: bytes, message: str) -> None:
    response = admin.put(f"/api/orgs/{org}/autodeploy", content=body, headers={"Content-Type": "application/json"})
    assert message in assert_error(response, 400)


def test_dry_run_must_be_a_boolean(admin: httpx2.Client, org: str) -> None:
    response = admin.put(f"/api/orgs/{org}/autodeploy", json={"stacks": []}, params={"dryRun": "perhaps"})
    assert "dryRun" in assert_error(response, 400)


def test_dry_run_given_twice_is_refused(admin: httpx2.Client, stacks: str) -> None:
    assert put(admin, stacks, DIAMOND).status_code == 200
    before = hooks(admin, stacks, "network")
    twice = admin.put(f"/api/orgs/{stacks}/autodeploy?dryRun=true&dryRun=false", json={"stacks": []})
    assert "more than once" in assert_error(twice, 400)
    assert hooks(admin, stacks, "network") == before


@pytest.mark.parametrize("misspelled", ["dry_run", "dryrun", "DryRun"])
def test_a_misspelled_dry_run_is_refused_instead_of_applying(
    admin: httpx2.Client, stacks: str, misspelled: str
) -> None:
    assert put(admin, stacks, DIAMOND).status_code == 200
    before = hooks(admin, stacks, "network")
    response = admin.put(f"/api/orgs/{stacks}/autodeploy", json={"stacks": []}, params={misspelled: "true"})
    assert "dryRun" in assert_error(response, 400)
    assert hooks(admin, stacks, "network") == before  # the empty document did not delete the edges


def test_a_viewer_may_read_and_dry_run_but_not_apply(viewer: httpx2.Client, admin: httpx2.Client, stacks: str) -> None:
    org = stacks
    assert viewer.get(f"/api/orgs/{org}/autodeploy").status_code == 200
    assert put(viewer, org, DIAMOND, dry_run=True).status_code == 200
    assert "needs member" in assert_error(put(viewer, org, DIAMOND), 403)
    assert_error(viewer.get(f"/api/orgs/{org}-elsewhere/autodeploy"), 404)
    assert hooks(admin, org, "network") == []


def test_an_apply_given_the_etag_of_a_diff_is_refused_when_the_declaration_changed_since(
    admin: httpx2.Client, stacks: str
) -> None:
    org = stacks
    shown = admin.get(f"/api/orgs/{org}/autodeploy")
    empty = shown.headers["ETag"]
    preview = put(admin, org, DIAMOND, dry_run=True)
    assert preview.headers["ETag"] == empty, "the dry run read the same declaration"
    # Someone else applies another declaration between the diff and its apply.
    chain = {"stacks": [{"project": "network", "stack": "prod", "downstreamRefs": ["app/prod"]}]}
    assert put(admin, org, chain).status_code == 200
    declared = admin.get(f"/api/orgs/{org}/autodeploy").json()
    stale = admin.put(f"/api/orgs/{org}/autodeploy", json=DIAMOND, headers={"If-Match": empty})
    assert "changed since the diff you saw" in assert_error(stale, 412)
    assert admin.get(f"/api/orgs/{org}/autodeploy").json() == declared, "nothing was changed"
    assert [h["payloadUrl"] for h in hooks(admin, org, "network")] == ["app/prod"]
    current = admin.get(f"/api/orgs/{org}/autodeploy").headers["ETag"]
    assert current != empty
    assert put(admin, org, DIAMOND, dry_run=True).headers["ETag"] == current
    applied = admin.put(f"/api/orgs/{org}/autodeploy", json=DIAMOND, headers={"If-Match": current})
    assert applied.status_code == 200, applied.text
    assert applied.json()["applied"] is True
    # A gate is part of the declaration too: changing one makes the ETag change.
    before = admin.get(f"/api/orgs/{org}/autodeploy").headers["ETag"]
    gated = {"stacks": [*DIAMOND["stacks"][:3], {**DIAMOND["stacks"][3], "requireApproval": False}]}
    assert put(admin, org, gated).status_code == 200
    assert admin.get(f"/api/orgs/{org}/autodeploy").headers["ETag"] != before
    anything = admin.put(f"/api/orgs/{org}/autodeploy", json=DIAMOND, headers={"If-Match": "*"})
    assert anything.status_code == 200, anything.text


@pytest.mark.parametrize("if_match", ["abc", 'W/"abc"', '"a", "b"', '"', ""])
def test_a_malformed_if_match_is_refused(admin: httpx2.Client, stacks: str, if_match: str) -> None:
    refused = admin.put(f"/api/orgs/{stacks}/autodeploy", json=DIAMOND, headers={"If-Match": if_match})
    assert "If-Match must be one ETag" in assert_error(refused, 400)
    assert admin.get(f"/api/orgs/{stacks}/autodeploy").json() == {"stacks": []}
