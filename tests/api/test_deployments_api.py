"""Deployments over real HTTP: create, effective settings, read, list, cancel, pause, metadata, events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa

from stackcascade.domain.deployments import Status
from stackcascade.services import queue
from stackcascade.services.context import Context
from stackcascade.services.secrets import SecretBox
from stackcascade.store.db import Database
from stackcascade.store.schema import events
from tests.support import LiveServer, assert_error

REPO = "https://example.com/infra.git"
SOURCE = {"sourceContext": {"git": {"repoUrl": REPO, "branch": "main"}}}
STATUSES = {"not-started", "accepted", "running", "succeeded", "failed", "skipped"}
CHOICES = "update, preview, refresh, destroy"
ADMIN_NAME = "admin (CASCADE_ADMIN_TOKEN)"


@pytest.fixture
def stack(admin: httpx2.Client, org: str) -> str:
    """A fresh stack with saved settings; the value is its deployments URL."""
    admin.post(f"/api/stacks/{org}/proj", json={"stackName": "dev"}).raise_for_status()
    url = f"/api/stacks/{org}/proj/dev/deployments"
    admin.post(f"{url}/settings", json=SOURCE).raise_for_status()
    return url


@pytest.fixture
async def db(live_server: LiveServer) -> AsyncIterator[Database]:
    database = Database(live_server.database_url)
    try:
        yield database
    finally:
        await database.dispose()


def deploy(client: httpx2.Client, url: str, operation: str = "update", **body: Any) -> dict[str, Any]:
    response = client.post(url, json={"operation": operation, **body})
    assert response.status_code == 202, response.text
    return dict(response.json())


async def claim_this(db: Database, deployment_id: str) -> Context:
    """Lease ``deployment_id`` as a runner would; other queued work on the shared server is claimed first."""
    ctx = Context(db=db, secrets=SecretBox.generate(), lease_seconds=600)
    for _ in range(200):
        claimed = await queue.claim(ctx, "test-runner")
        if claimed is None:
            break
        if claimed.id == deployment_id:
            return ctx
    raise AssertionError(f"deployment {deployment_id} was not claimable")


# --- create --------------------------------------------------------------------------------------


def test_create_answers_202_with_id_console_url_and_version(
    live_server: LiveServer, admin: httpx2.Client, org: str, stack: str
) -> None:
    response = admin.post(stack, json={"operation": "update"})
    assert response.status_code == 202
    created = response.json()
    assert created.keys() == {"id", "consoleUrl", "version"}
    assert created["version"] == 1
    assert created["consoleUrl"] == f"{live_server.url}/{org}/proj/dev/deployments/{created['id']}"


def test_versions_are_sequential_per_stack(admin: httpx2.Client, org: str, stack: str) -> None:
    assert [deploy(admin, stack, op)["version"] for op in ("update", "preview", "refresh", "destroy")] == [1, 2, 3, 4]
    admin.post(f"/api/stacks/{org}/proj", json={"stackName": "prod"}).raise_for_status()
    other = f"/api/stacks/{org}/proj/prod/deployments"
    assert deploy(admin, other, **SOURCE)["version"] == 1
    assert deploy(admin, stack)["version"] == 5


def test_concurrent_creates_get_distinct_sequential_versions(live_server: LiveServer, stack: str) -> None:
    def attempt(_: int) -> httpx2.Response:
        headers = {"Authorization": f"token {live_server.admin_token}"}
        with httpx2.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
            return client.post(stack, json={"operation": "update"})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(attempt, range(8)))
    assert [r.status_code for r in responses] == [202] * 8, [r.text for r in responses]
    assert sorted(r.json()["version"] for r in responses) == list(range(1, 9))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, f"'operation' is required: one of {CHOICES}"),
        ({"operation": None}, f"'operation' is required: one of {CHOICES}"),
        ({"operationContext": {"operation": "update"}}, f"'operation' is required: one of {CHOICES}"),
        ({"operation": "deploy"}, f"unknown operation 'deploy': use one of {CHOICES}"),
        ({"operation": "UPDATE"}, f"unknown operation 'UPDATE': use one of {CHOICES}"),
        ({"operation": 1}, f"'operation' must be a string: one of {CHOICES}"),
        (
            {"operation": "detect-drift"},
            f"operation 'detect-drift' is not supported by stackcascade; use one of {CHOICES}",
        ),
        (
            {"operation": "update", "operationContext": {"operation": "update"}},
            "give 'operation' at the top level of the request, not inside operationContext",
        ),
        (
            {"operation": "update", "operationContext": {"Operation": "preview"}},
            "give 'operation' at the top level of the request, not inside operationContext",
        ),
        ({"operation": "update", "inheritSettings": "false"}, "'inheritSettings' must be true or false"),
        ({"operation": "update", "sourceContext": {"git": {"branch": 3}}}, "sourceContext.git.branch must be a string"),
        (
            {"operation": "update", "sourceContext": {"git": {"commit": "abc", "branch": "x"}}},
            "sourceContext.git: give either 'branch' or 'commit', not both",
        ),
    ],
)
def test_invalid_create_requests_are_a_400_and_create_nothing(
    admin: httpx2.Client, stack: str, body: dict[str, Any], message: str
) -> None:
    assert_error(admin.post(stack, json=body), 400, message)
    assert admin.get(stack).json()["total"] == 0


def test_operation_key_is_matched_case_insensitively(admin: httpx2.Client, stack: str) -> None:
    created = admin.post(stack, json={"Operation": "preview"})
    assert created.status_code == 202
    assert admin.get(f"{stack}/{created.json()['id']}").json()["pulumiOperation"] == "preview"


def test_a_null_operation_context_operation_is_not_an_error(admin: httpx2.Client, stack: str) -> None:
    assert admin.post(stack, json={"operation": "update", "operationContext": {"operation": None}}).status_code == 202


def test_creating_on_a_missing_stack_is_a_404(admin: httpx2.Client, org: str) -> None:
    response = admin.post(f"/api/stacks/{org}/proj/nope/deployments", json={"operation": "update", **SOURCE})
    assert_error(response, 404, f"stack {org}/proj/nope not found")


# --- effective settings --------------------------------------------------------------------------


def configuration(client: httpx2.Client, stack: str, deployment_id: str) -> dict[str, Any]:
    response = client.get(f"{stack}/{deployment_id}")
    assert response.status_code == 200, response.text
    return dict(response.json()["configuration"])


def test_inherited_settings_are_merged_under_the_request(admin: httpx2.Client, stack: str) -> None:
    admin.post(
        f"{stack}/settings",
        json={
            "sourceContext": {"git": {"repoDir": "net"}},
            "operationContext": {"environmentVariables": {"A": "1", "B": "2"}},
        },
    ).raise_for_status()
    created = deploy(
        admin,
        stack,
        sourceContext={"git": {"branch": "feature"}},
        operationContext={"environmentVariables": {"B": "20", "C": "3"}},
    )
    config = configuration(admin, stack, created["id"])
    assert config["source"] == {"git": {"repoURL": REPO, "branch": "feature", "repoDir": "net"}}
    assert config["environmentVariables"] == [
        {"name": "A", "secret": False, "value": "1"},
        {"name": "B", "secret": False, "value": "20"},
        {"name": "C", "secret": False, "value": "3"},
    ]


def test_inherit_settings_defaults_to_true_also_when_null(admin: httpx2.Client, stack: str) -> None:
    created = deploy(admin, stack, inheritSettings=None)
    assert configuration(admin, stack, created["id"])["source"] == {"git": {"repoURL": REPO, "branch": "main"}}


def test_a_request_commit_replaces_the_saved_branch(admin: httpx2.Client, stack: str) -> None:
    created = deploy(admin, stack, sourceContext={"git": {"commit": "deadbeef"}})
    assert configuration(admin, stack, created["id"])["source"] == {"git": {"repoURL": REPO, "commit": "deadbeef"}}


def test_request_nulls_never_delete_inherited_values(admin: httpx2.Client, stack: str) -> None:
    """The Pulumi SDK sends every unset field as null; a one-off override must not wipe saved settings."""
    admin.post(
        f"{stack}/settings", json={"operationContext": {"environmentVariables": {"A": "1", "B": "2"}}}
    ).raise_for_status()
    created = deploy(
        admin,
        stack,
        sourceContext={"git": {"repoUrl": None, "branch": None, "commit": None, "repoDir": None, "gitAuth": None}},
        operationContext={"environmentVariables": {"A": None, "B": "20"}, "preRunCommands": None, "options": None},
    )
    config = configuration(admin, stack, created["id"])
    assert config["source"] == {"git": {"repoURL": REPO, "branch": "main"}}
    assert config["environmentVariables"] == [
        {"name": "A", "secret": False, "value": "1"},
        {"name": "B", "secret": False, "value": "20"},
    ]


def test_without_inheritance_only_the_request_counts(admin: httpx2.Client, stack: str) -> None:
    admin.post(
        f"{stack}/settings", json={"operationContext": {"environmentVariables": {"SAVED": "1"}}}
    ).raise_for_status()
    created = deploy(
        admin,
        stack,
        inheritSettings=False,
        sourceContext={"git": {"repoUrl": "https://example.com/other.git", "commit": "abc"}},
        operationContext={"environmentVariables": {"ONLY": "x"}},
    )
    config = configuration(admin, stack, created["id"])
    assert config["source"] == {"git": {"repoURL": "https://example.com/other.git", "commit": "abc"}}
    assert config["environmentVariables"] == [{"name": "ONLY", "secret": False, "value": "x"}]


def test_without_inheritance_a_request_without_source_is_a_400(admin: httpx2.Client, org: str, stack: str) -> None:
    response = admin.post(stack, json={"operation": "update", "inheritSettings": False})
    assert_error(
        response,
        400,
        f"no source for stack {org}/proj/dev: inheritSettings is false, or give sourceContext in the request",
    )
    assert admin.get(stack).json()["total"] == 0


def test_a_stack_without_saved_source_needs_one_in_the_request(admin: httpx2.Client, org: str) -> None:
    admin.post(f"/api/stacks/{org}/proj", json={"stackName": "bare"}).raise_for_status()
    url = f"/api/stacks/{org}/proj/bare/deployments"
    assert_error(
        admin.post(url, json={"operation": "update"}),
        400,
        f"no source for stack {org}/proj/bare: save deployment settings with sourceContext.git.repoUrl, "
        "or give sourceContext in the request",
    )
    assert deploy(admin, url, sourceContext={"git": {"repoURL": REPO}})["version"] == 1


def test_secret_variables_show_as_secret_without_a_value(admin: httpx2.Client, stack: str) -> None:
    created = deploy(admin, stack, operationContext={"environmentVariables": {"S": {"secret": "deploy-secret-51"}}})
    response = admin.get(f"{stack}/{created['id']}")
    assert response.json()["configuration"]["environmentVariables"] == [{"name": "S", "secret": True}]
    assert "deploy-secret-51" not in response.text
    assert "deploy-secret-51" not in admin.get(stack).text


def test_the_settings_are_a_snapshot_taken_at_creation(admin: httpx2.Client, stack: str) -> None:
    created = deploy(admin, stack)
    admin.post(f"{stack}/settings", json={"sourceContext": {"git": {"branch": "changed"}}}).raise_for_status()
    admin.delete(f"{stack}/settings").raise_for_status()
    assert configuration(admin, stack, created["id"])["source"] == {"git": {"repoURL": REPO, "branch": "main"}}


# --- read ----------------------------------------------------------------------------------------


def assert_contract_shape(item: dict[str, Any]) -> None:
    assert {
        "id",
        "created",
        "modified",
        "status",
        "version",
        "requestedBy",
        "pulumiOperation",
        "initiator",
        "jobs",
        "orgName",
        "projectName",
        "stackName",
        "consoleUrl",
    } <= item.keys()
    assert item["status"] in STATUSES
    assert item["requestedBy"].keys() >= {"name", "githubLogin", "avatarUrl"}
    assert isinstance(item["jobs"], list) and item["jobs"]
    for job in item["jobs"]:
        assert job["status"] in STATUSES
        assert isinstance(job["steps"], list)
    assert item["created"].endswith("Z")


def test_get_by_id_has_the_contract_shape(admin: httpx2.Client, org: str, stack: str) -> None:
    created = deploy(admin, stack, "preview")
    deploy(admin, stack)
    response = admin.get(f"{stack}/{created['id']}")
    assert response.status_code == 200
    got = response.json()
    assert_contract_shape(got)
    assert got["id"] == created["id"]
    assert got["version"] == 1
    assert got["latestVersion"] == 2
    assert got["status"] == "not-started"
    assert got["jobs"][0]["status"] == "not-started"
    assert got["pulumiOperation"] == "preview"
    assert got["initiator"] == "api"
    assert got["requestedBy"]["name"] == ADMIN_NAME
    assert (got["orgName"], got["projectName"], got["stackName"]) == (org, "proj", "dev")
    assert got["consoleUrl"] == created["consoleUrl"]
    assert got["reason"] is None


def test_get_by_version_matches_get_by_id(admin: httpx2.Client, stack: str) -> None:
    first = deploy(admin, stack)
    second = deploy(admin, stack, "refresh")
    for created in (first, second):
        by_version = admin.get(f"{stack}/version/{created['version']}")
        assert by_version.status_code == 200
        assert by_version.json() == admin.get(f"{stack}/{created['id']}").json()


def test_a_missing_version_is_a_404(admin: httpx2.Client, org: str, stack: str) -> None:
    deploy(admin, stack)
    assert_error(admin.get(f"{stack}/version/2"), 404, f"stack {org}/proj/dev has no deployment version 2")


@pytest.mark.parametrize("version", ["0", "-1", "abc", "1.5"])
def test_an_invalid_version_is_a_400(admin: httpx2.Client, stack: str, version: str) -> None:
    assert "version" in assert_error(admin.get(f"{stack}/version/{version}"), 400)


def test_an_unknown_deployment_id_is_a_404(admin: httpx2.Client, org: str, stack: str) -> None:
    assert_error(admin.get(f"{stack}/nope"), 404, f"deployment nope not found on stack {org}/proj/dev")


def test_a_deployment_is_not_reachable_through_another_stack(admin: httpx2.Client, org: str, stack: str) -> None:
    created = deploy(admin, stack)
    admin.post(f"/api/stacks/{org}/proj", json={"stackName": "prod"}).raise_for_status()
    other = f"/api/stacks/{org}/proj/prod/deployments"
    assert_error(
        admin.get(f"{other}/{created['id']}"), 404, f"deployment {created['id']} not found on stack {org}/proj/prod"
    )
    assert_error(admin.post(f"{other}/{created['id']}/cancel"), 404)
    assert admin.get(f"{stack}/{created['id']}").json()["status"] == "not-started"


# --- list ----------------------------------------------------------------------------------------


def versions(listing: dict[str, Any]) -> list[int]:
    return [d["version"] for d in listing["deployments"]]


def test_list_per_stack_is_newest_first_and_pages(admin: httpx2.Client, stack: str) -> None:
    for _ in range(5):
        deploy(admin, stack)
    listing = admin.get(stack).json()
    assert listing.keys() == {"deployments", "itemsPerPage", "total"}
    assert (listing["itemsPerPage"], listing["total"]) == (10, 5)
    assert versions(listing) == [5, 4, 3, 2, 1]
    for item in listing["deployments"]:
        assert_contract_shape(item)
        assert item["updates"] == []
        assert item["paused"] is False
    pages = [admin.get(stack, params={"page": p, "pageSize": 2}).json() for p in (1, 2, 3, 4)]
    assert [versions(p) for p in pages] == [[5, 4], [3, 2], [1], []]
    assert {(p["total"], p["itemsPerPage"]) for p in pages} == {(5, 2)}


def test_list_per_stack_ascending(admin: httpx2.Client, stack: str) -> None:
    for _ in range(3):
        deploy(admin, stack)
    assert versions(admin.get(stack, params={"asc": "true"}).json()) == [1, 2, 3]
    assert versions(admin.get(stack, params={"asc": "true", "page": 2, "pageSize": 2}).json()) == [3]
    assert versions(admin.get(stack, params={"asc": "false"}).json()) == [3, 2, 1]


def test_list_per_org_covers_every_stack_of_the_org_only(admin: httpx2.Client, org: str, stack: str) -> None:
    admin.post(f"/api/stacks/{org}/net", json={"stackName": "dev"}).raise_for_status()
    other_stack = f"/api/stacks/{org}/net/dev/deployments"
    a = deploy(admin, stack)
    b = deploy(admin, other_stack, **SOURCE)
    c = deploy(admin, stack)
    elsewhere = org + "-x"
    admin.post(f"/api/stacks/{elsewhere}/proj", json={"stackName": "dev"}).raise_for_status()
    deploy(admin, f"/api/stacks/{elsewhere}/proj/dev/deployments", **SOURCE)
    listing = admin.get(f"/api/orgs/{org}/deployments").json()
    assert listing["total"] == 3
    assert [d["id"] for d in listing["deployments"]] == [c["id"], b["id"], a["id"]]
    assert [d["projectName"] for d in listing["deployments"]] == ["proj", "net", "proj"]
    ascending = admin.get(f"/api/orgs/{org}/deployments", params={"asc": "true", "pageSize": 2}).json()
    assert [d["id"] for d in ascending["deployments"]] == [a["id"], b["id"]]
    assert ascending["total"] == 3


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"page": 0}, "page starts at 1"),
        ({"page": -3}, "page starts at 1"),
        ({"pageSize": 500}, "pageSize must be between 1 and 100"),
        ({"pageSize": 0}, "pageSize must be between 1 and 100"),
        ({"pageSize": 101}, "pageSize must be between 1 and 100"),
    ],
)
def test_paging_parameters_are_validated(
    admin: httpx2.Client, org: str, stack: str, params: dict[str, int], message: str
) -> None:
    assert_error(admin.get(stack, params=params), 400, message)
    assert_error(admin.get(f"/api/orgs/{org}/deployments", params=params), 400, message)


@pytest.mark.parametrize("params", [{"page": "first"}, {"pageSize": "ten"}, {"asc": "sometimes"}])
def test_non_numeric_paging_parameters_are_a_400(admin: httpx2.Client, stack: str, params: dict[str, str]) -> None:
    message = assert_error(admin.get(stack, params=params), 400)
    assert next(iter(params)) in message


def test_page_size_100_is_allowed(admin: httpx2.Client, stack: str) -> None:
    assert admin.get(stack, params={"pageSize": 100}).json()["itemsPerPage"] == 100


# --- cancel --------------------------------------------------------------------------------------


def test_cancelling_a_queued_deployment_skips_it_naming_who(
    live_server: LiveServer, admin: httpx2.Client, org: str, stack: str
) -> None:
    token = admin.post("/api/tokens", json={"org": org, "role": "member", "name": "carol"}).json()["token"]
    created = deploy(admin, stack)
    with httpx2.Client(base_url=live_server.url, headers={"Authorization": f"token {token}"}, timeout=30) as carol:
        response = carol.post(f"{stack}/{created['id']}/cancel")
    assert response.status_code == 200
    assert response.json() == {
        "id": created["id"],
        "status": "skipped",
        "reason": "cancelled by carol",
        "cancelRequested": False,
    }
    got = admin.get(f"{stack}/{created['id']}").json()
    assert (got["status"], got["reason"]) == ("skipped", "cancelled by carol")
    assert got["jobs"][0]["status"] == "skipped"
    assert got["finished"] is not None


def test_cancelling_twice_is_a_conflict(admin: httpx2.Client, stack: str) -> None:
    created = deploy(admin, stack)
    assert admin.post(f"{stack}/{created['id']}/cancel").status_code == 200
    assert_error(
        admin.post(f"{stack}/{created['id']}/cancel"),
        409,
        f"deployment {created['id']} already finished (skipped); nothing to cancel",
    )
    assert admin.get(f"{stack}/{created['id']}").json()["reason"] == f"cancelled by {ADMIN_NAME}"


def test_cancelling_one_deployment_leaves_the_others_queued(admin: httpx2.Client, stack: str) -> None:
    first, second, third = (deploy(admin, stack) for _ in range(3))
    admin.post(f"{stack}/{second['id']}/cancel").raise_for_status()
    statuses = {d["id"]: d["status"] for d in admin.get(stack).json()["deployments"]}
    assert statuses == {first["id"]: "not-started", second["id"]: "skipped", third["id"]: "not-started"}


def test_cancelling_an_unknown_deployment_is_a_404(admin: httpx2.Client, org: str, stack: str) -> None:
    assert_error(admin.post(f"{stack}/missing/cancel"), 404, f"deployment missing not found on stack {org}/proj/dev")


async def test_cancelling_a_running_deployment_asks_the_runner_to_stop(
    admin: httpx2.Client, db: Database, stack: str
) -> None:
    created = deploy(admin, stack)
    ctx = await claim_this(db, created["id"])
    await queue.start(ctx, created["id"], "test-runner")
    response = admin.post(f"{stack}/{created['id']}/cancel")
    assert response.status_code == 200
    assert response.json() == {"id": created["id"], "status": "running", "reason": None, "cancelRequested": True}
    beat = await queue.heartbeat(ctx, created["id"], "test-runner")
    assert beat.cancel_requested is True
    await queue.finish(ctx, created["id"], "test-runner", Status.FAILED, "cancelled")
    got = admin.get(f"{stack}/{created['id']}").json()
    assert (got["status"], got["reason"]) == ("failed", "cancelled")
    assert admin.post(f"{stack}/{created['id']}/cancel").status_code == 409


# --- pause, resume, metadata ---------------------------------------------------------------------


def counts(**given: int) -> dict[str, int]:
    base = {"notStarted": 0, "accepted": 0, "running": 0, "failed": 0, "succeeded": 0, "skipped": 0}
    base.update(given)
    base["total"] = sum(base.values())
    return base


def test_stack_metadata_of_a_fresh_stack(admin: httpx2.Client, stack: str) -> None:
    meta = admin.get(f"{stack}/metadata")
    assert meta.status_code == 200
    assert meta.json() == {
        "paused": False,
        "stackPaused": False,
        "organizationPaused": False,
        "hasSchedules": False,
        "concurrency": 1,
        "deploymentCounts": counts(),
    }


def test_pausing_and_resuming_a_stack_shows_in_metadata_and_lists(admin: httpx2.Client, org: str, stack: str) -> None:
    deploy(admin, stack)
    assert admin.post(f"{stack}/pause").status_code == 200
    assert admin.post(f"{stack}/pause").status_code == 200  # idempotent
    meta = admin.get(f"{stack}/metadata").json()
    assert (meta["paused"], meta["stackPaused"], meta["organizationPaused"]) == (True, True, False)
    assert admin.get(stack).json()["deployments"][0]["paused"] is True
    assert admin.get(f"/api/orgs/{org}/deployments/metadata").json()["paused"] is False
    assert admin.post(f"{stack}/resume").status_code == 200
    meta = admin.get(f"{stack}/metadata").json()
    assert (meta["paused"], meta["stackPaused"], meta["organizationPaused"]) == (False, False, False)
    assert admin.get(stack).json()["deployments"][0]["paused"] is False


def test_pausing_the_org_shows_on_every_stack(admin: httpx2.Client, org: str, stack: str) -> None:
    assert admin.post(f"/api/orgs/{org}/deployments/pause").status_code == 200
    meta = admin.get(f"{stack}/metadata").json()
    assert (meta["paused"], meta["stackPaused"], meta["organizationPaused"]) == (True, False, True)
    assert admin.get(f"/api/orgs/{org}/deployments/metadata").json()["paused"] is True
    assert admin.post(f"/api/orgs/{org}/deployments/resume").status_code == 200
    meta = admin.get(f"{stack}/metadata").json()
    assert (meta["paused"], meta["organizationPaused"]) == (False, False)
    assert admin.get(f"/api/orgs/{org}/deployments/metadata").json()["paused"] is False


def test_pausing_one_org_does_not_pause_another(admin: httpx2.Client, org: str, stack: str) -> None:
    admin.post(f"/api/orgs/{org}-x/deployments/pause").raise_for_status()
    assert admin.get(f"{stack}/metadata").json()["paused"] is False
    assert admin.get(f"/api/orgs/{org}-x/deployments/metadata").json()["paused"] is True


def test_deployment_counts_follow_the_statuses(admin: httpx2.Client, org: str, stack: str) -> None:
    created = [deploy(admin, stack) for _ in range(3)]
    admin.post(f"{stack}/{created[0]['id']}/cancel").raise_for_status()
    admin.post(f"/api/stacks/{org}/net", json={"stackName": "dev"}).raise_for_status()
    deploy(admin, f"/api/stacks/{org}/net/dev/deployments", **SOURCE)
    assert admin.get(f"{stack}/metadata").json()["deploymentCounts"] == counts(notStarted=2, skipped=1)
    org_meta = admin.get(f"/api/orgs/{org}/deployments/metadata").json()
    assert org_meta == {
        "paused": False,
        "concurrency": 25,
        "cascadeMode": "coalesced",
        "deploymentCounts": counts(notStarted=3, skipped=1),
    }


def test_org_metadata_of_an_org_never_seen_is_the_default(admin: httpx2.Client, org: str) -> None:
    assert admin.get(f"/api/orgs/{org}/deployments/metadata").json() == {
        "paused": False,
        "concurrency": 25,
        "cascadeMode": "coalesced",
        "deploymentCounts": counts(),
    }


def test_org_concurrency_can_be_changed_by_an_admin(admin: httpx2.Client, org: str) -> None:
    response = admin.patch(f"/api/orgs/{org}/settings", json={"concurrency": 5})
    assert response.status_code == 200
    assert response.json()["concurrency"] == 5
    assert admin.get(f"/api/orgs/{org}/deployments/metadata").json()["concurrency"] == 5
    for bad in (0, 10_001, "5", True, 2.5):
        assert_error(
            admin.patch(f"/api/orgs/{org}/settings", json={"concurrency": bad}),
            400,
            "concurrency must be a whole number between 1 and 10000",
        )
    assert admin.get(f"/api/orgs/{org}/deployments/metadata").json()["concurrency"] == 5


def test_concurrent_first_pauses_of_an_org_all_succeed(live_server: LiveServer, org: str) -> None:
    def attempt(_: int) -> int:
        headers = {"Authorization": f"token {live_server.admin_token}"}
        with httpx2.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
            return client.post(f"/api/orgs/{org}/deployments/pause").status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(attempt, range(8))) == [200] * 8


async def test_a_paused_stack_holds_its_queued_work(admin: httpx2.Client, db: Database, stack: str) -> None:
    created = deploy(admin, stack)
    admin.post(f"{stack}/pause").raise_for_status()
    with pytest.raises(AssertionError, match="was not claimable"):
        await claim_this(db, created["id"])
    assert admin.get(f"{stack}/{created['id']}").json()["status"] == "not-started"
    admin.post(f"{stack}/resume").raise_for_status()
    await claim_this(db, created["id"])
    assert admin.get(f"{stack}/{created['id']}").json()["status"] == "accepted"
    assert admin.get(f"{stack}/metadata").json()["deploymentCounts"] == counts(accepted=1)


# --- events --------------------------------------------------------------------------------------


async def test_each_creation_writes_a_deployment_queued_event(
    admin: httpx2.Client, db: Database, org: str, stack: str
) -> None:
    created = [deploy(admin, stack), deploy(admin, stack, "preview")]
    assert admin.post(stack, json={"operation": "nope"}).status_code == 400
    assert admin.post(stack, json={"operation": "update", "inheritSettings": False}).status_code == 400
    async with db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(events).where(events.c.org == org, events.c.kind == "deployment_queued").order_by(events.c.id)
            )
        ).all()
    stack_id = admin.get(f"/api/stacks/{org}/proj/dev").json()["id"]
    assert [r.deployment_id for r in rows] == [c["id"] for c in created]
    for row, want, operation in zip(rows, created, ("update", "preview"), strict=True):
        assert row.stack_id == stack_id
        assert row.payload == {
            "deploymentId": want["id"],
            "version": want["version"],
            "operation": operation,
            "status": "not-started",
            "initiator": "api",
            "requestedBy": ADMIN_NAME,
            "stack": {"organization": org, "projectName": "proj", "stackName": "dev"},
        }


@pytest.mark.parametrize(
    "params",
    [
        {"continuationToken": "99999999999999999999"},  # beyond SQLite's integers
        {"continuationToken": "2147483648"},  # beyond PostgreSQL's INTEGER
        {"continuationToken": "\u0661"},  # a digit (ARABIC-INDIC ONE), but not one this server writes
        {"job": "0", "step": "2147483648"},
        {"job": "0", "step": "0", "offset": "99999999999999999999"},
    ],
)
def test_log_positions_no_server_gives_out_are_a_400(admin: httpx2.Client, stack: str, params: dict[str, str]) -> None:
    queued = deploy(admin, stack)
    response = admin.get(f"{stack}/{queued['id']}/logs", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == 400
