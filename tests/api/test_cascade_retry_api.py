"""Retrying a cascade member over real HTTP: a member that cannot run is refused with a 409 saying what to fix."""

from __future__ import annotations

import httpx2

from tests.support import assert_error


def test_retrying_a_member_without_deployment_settings_answers_409_and_changes_nothing(
    admin: httpx2.Client, org: str
) -> None:
    for project in ("network", "database"):
        assert admin.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
    settings = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere", "branch": "main"}}}
    assert admin.post(f"/api/stacks/{org}/network/prod/deployments/settings", json=settings).status_code == 200
    edge = {"format": "pulumi_deployments", "payloadUrl": "database/prod", "filters": ["update_succeeded"]}
    assert admin.post(f"/api/stacks/{org}/network/prod/hooks", json=edge).status_code == 201
    started = admin.post(f"/api/stacks/{org}/network/prod/events", json={"kind": "update_succeeded"}).json()
    cascade_url = f"/api/orgs/{org}/cascades/{started['cascadeId']}"
    before = admin.get(cascade_url).json()
    assert {m["stack"]: m["status"] for m in before["members"]}["database/prod"] == "failed"  # no source
    message = assert_error(admin.post(f"{cascade_url}/members/database/prod/retry"), 409)
    assert message == f"stack {org}/database/prod has no deployment settings: save them first, then retry"
    assert admin.get(cascade_url).json() == before
    assert admin.get(f"/api/stacks/{org}/database/prod/deployments").json()["deployments"] == []
