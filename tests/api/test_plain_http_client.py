"""The Pulumi-shaped REST API over plain HTTP: exact status codes and JSON shapes for a whole journey.

Every response body the journey receives is recorded, so the last step can check that the secret
saved in the deployment settings never came back in plaintext, in any response.
"""

from __future__ import annotations

import base64
import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest

from tests.support import LiveServer

PROJECT = "network"
STACK = "prod"
REPO = "https://git.example.com/platform/infra.git"
ADMIN_NAME = "admin (CASCADE_ADMIN_TOKEN)"  # the name the server gives the configured admin token
MASK = "[secret]"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
NO_COUNTS = {"notStarted": 0, "accepted": 0, "running": 0, "failed": 0, "succeeded": 0, "skipped": 0, "total": 0}


def counts(**given: int) -> dict[str, int]:
    result = {**NO_COUNTS, **given}
    result["total"] = sum(v for k, v in result.items() if k != "total")
    return result


class Recorder:
    """Every response body a client received."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, response: httpx2.Response) -> None:
        response.read()
        self.bodies.append(response.content)

    def assert_never_contains(self, secret: str) -> None:
        assert self.bodies, "nothing was recorded"
        needles = [secret.encode(), base64.b64encode(secret.encode()), base64.urlsafe_b64encode(secret.encode())]
        for body in self.bodies:
            for needle in needles:
                assert needle not in body, f"a response body carried the secret: {body[:200]!r}"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client_for(live_server: LiveServer, recorder: Recorder) -> Iterator[Callable[[str | None], httpx2.Client]]:
    """Plain HTTP clients (one per token) that record every response body."""
    opened: list[httpx2.Client] = []

    def make(token: str | None) -> httpx2.Client:
        headers = {"Authorization": f"token {token}"} if token else {}
        client = httpx2.Client(
            base_url=live_server.url, headers=headers, timeout=30, event_hooks={"response": [recorder]}
        )
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def api(live_server: LiveServer, client_for: Callable[[str | None], httpx2.Client]) -> httpx2.Client:
    return client_for(live_server.admin_token)


@pytest.fixture
def base_url(live_server: LiveServer) -> str:
    """What the server puts in links and console URLs."""
    return (os.environ.get("CASCADE_PUBLIC_URL") or "").rstrip("/") or live_server.url


@pytest.fixture
def secret() -> str:
    return f"s3cr3t-{uuid.uuid4().hex}"


def error(status: int, message: str) -> dict[str, Any]:
    return {"code": status, "message": message}


def expect(response: httpx2.Response, status: int) -> Any:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json() if response.content else None


def issue_token(api: httpx2.Client, org: str, role: str) -> str:
    body = expect(api.post("/api/tokens", json={"org": org, "role": role}), 201)
    assert (body["org"], body["role"], body["kind"]) == (org, role, "org")
    token = body["token"]
    assert isinstance(token, str)
    return token


def test_the_whole_journey_has_exact_shapes_and_never_returns_the_secret(
    api: httpx2.Client, recorder: Recorder, base_url: str, org: str, secret: str
) -> None:
    stacks = f"/api/stacks/{org}/{PROJECT}"
    stack = f"{stacks}/{STACK}"
    ref = f"{org}/{PROJECT}/{STACK}"

    # --- stacks ------------------------------------------------------------------------------------
    created = expect(api.post(stacks, json={"stackName": STACK, "tags": {"team": "platform", "tier": "1"}}), 200)
    assert TIMESTAMP.match(created["created"])
    stack_id = created["id"]
    stack_body = {
        "id": stack_id,
        "orgName": org,
        "projectName": PROJECT,
        "stackName": STACK,
        "activeUpdate": "",
        "tags": {"team": "platform", "tier": "1"},
        "version": 0,
        "created": created["created"],
    }
    assert created == {"messages": [], **stack_body}
    assert expect(api.post(stacks, json={"stackName": STACK}), 409) == error(409, f"stack {ref} already exists")

    exists = api.head(stacks)
    assert (exists.status_code, exists.content) == (200, b"")
    assert api.head(f"/api/stacks/{org}/no-such-project").status_code == 404
    assert expect(api.get(stack), 200) == stack_body
    assert expect(api.get("/api/user/stacks", params={"organization": org}), 200) == {
        "stacks": [
            {
                "id": stack_id,
                "orgName": org,
                "projectName": PROJECT,
                "stackName": STACK,
                "links": {"self": f"{base_url}/{ref}"},
            }
        ]
    }

    # --- deployment settings -----------------------------------------------------------------------
    settings = f"{stack}/deployments/settings"
    no_settings = error(404, f"stack {ref} has no deployment settings")
    assert expect(api.get(settings), 404) == no_settings

    saved = expect(
        api.post(
            settings,
            json={
                "sourceContext": {"git": {"repoUrl": REPO, "branch": "main", "repoDir": "network"}},
                "operationContext": {
                    "preRunCommands": ["make deps"],
                    "environmentVariables": {"REGION": "eu-west-1", "API_TOKEN": {"secret": secret}},
                },
            },
        ),
        200,
    )
    ciphertext = saved["operationContext"]["environmentVariables"]["API_TOKEN"]["ciphertext"]
    assert isinstance(ciphertext, str)
    assert secret.encode() not in base64.b64decode(ciphertext, validate=True)
    sealed = {"secret": MASK, "ciphertext": ciphertext}
    assert saved == {
        "version": 1,
        "source": "api",
        "sourceContext": {"git": {"repoUrl": REPO, "branch": "main", "repoDir": "network"}},
        "operationContext": {
            "preRunCommands": ["make deps"],
            "environmentVariables": {"REGION": {"secret": "", "plaintext": "eu-west-1"}, "API_TOKEN": sealed},
        },
    }
    assert expect(api.get(settings), 200) == saved

    # POST is a merge patch: given keys change, a null environment variable is removed, the rest stays.
    patched = expect(
        api.post(
            settings,
            json={
                "sourceContext": {"git": {"branch": "release"}},
                "operationContext": {"environmentVariables": {"REGION": None, "STAGE": "blue"}},
            },
        ),
        200,
    )
    assert patched == {
        "version": 2,
        "source": "api",
        "sourceContext": {"git": {"repoUrl": REPO, "branch": "release", "repoDir": "network"}},
        "operationContext": {
            "preRunCommands": ["make deps"],
            "environmentVariables": {"API_TOKEN": sealed, "STAGE": {"secret": "", "plaintext": "blue"}},
        },
    }

    # PUT replaces; the secret is sent back as it was read (mask + ciphertext) and stays the same.
    replaced = expect(
        api.put(
            settings,
            json={
                "sourceContext": {"git": {"repoUrl": REPO, "commit": "0a1b2c3"}},
                "operationContext": {
                    "environmentVariables": {"API_TOKEN": sealed, "STAGE": "blue", "REGION": "eu-west-1"}
                },
            },
        ),
        200,
    )
    assert replaced == {
        "version": 3,
        "source": "api",
        "sourceContext": {"git": {"repoUrl": REPO, "commit": "0a1b2c3"}},
        "operationContext": {
            "environmentVariables": {
                "API_TOKEN": sealed,
                "STAGE": {"secret": "", "plaintext": "blue"},
                "REGION": {"secret": "", "plaintext": "eu-west-1"},
            },
        },
    }

    # --- deployments -------------------------------------------------------------------------------
    deployments = f"{stack}/deployments"
    first = expect(api.post(deployments, json={"operation": "update"}), 202)  # inheritSettings defaults to true
    assert first == {"id": first["id"], "consoleUrl": f"{base_url}/{ref}/deployments/{first['id']}", "version": 1}
    second = expect(
        api.post(
            deployments,
            json={
                "operation": "preview",
                "inheritSettings": True,
                "operationContext": {"environmentVariables": {"EXTRA": "1"}},
            },
        ),
        202,
    )
    assert second == {"id": second["id"], "consoleUrl": f"{base_url}/{ref}/deployments/{second['id']}", "version": 2}

    got = expect(api.get(f"{deployments}/{first['id']}"), 200)
    assert TIMESTAMP.match(got["created"])
    requested_by = {"name": ADMIN_NAME, "githubLogin": ADMIN_NAME, "avatarUrl": ""}
    common = {
        "id": first["id"],
        "created": got["created"],
        "modified": got["created"],
        "status": "not-started",
        "version": 1,
        "requestedBy": requested_by,
        "pulumiOperation": "update",
        "initiator": "api",
        "jobs": [{"status": "not-started", "steps": [], "lastUpdated": got["created"]}],
        "orgName": org,
        "projectName": PROJECT,
        "stackName": STACK,
        "reason": None,
        "cascadeId": None,
        "triggeredBy": None,
        "started": None,
        "finished": None,
        "consoleUrl": first["consoleUrl"],
    }
    variables = [
        {"name": "API_TOKEN", "secret": True},
        {"name": "REGION", "secret": False, "value": "eu-west-1"},
        {"name": "STAGE", "secret": False, "value": "blue"},
    ]
    assert got == {
        **common,
        "latestVersion": 2,
        "resourceChanges": None,
        "configuration": {
            "environmentVariables": variables,
            "source": {"git": {"repoURL": REPO, "commit": "0a1b2c3"}},
        },
    }
    assert expect(api.get(f"{deployments}/version/1"), 200) == got
    preview = expect(api.get(f"{deployments}/version/2"), 200)
    assert (preview["id"], preview["pulumiOperation"], preview["latestVersion"]) == (second["id"], "preview", 2)
    assert preview["configuration"]["environmentVariables"] == [
        variables[0],
        {"name": "EXTRA", "secret": False, "value": "1"},
        *variables[1:],
    ]
    assert expect(api.get(f"{deployments}/version/3"), 404) == error(404, f"stack {ref} has no deployment version 3")
    assert expect(api.get(f"{deployments}/version/0"), 400)["code"] == 400
    assert expect(api.get(f"{deployments}/no-such-id"), 404) == error(
        404, f"deployment no-such-id not found on stack {ref}"
    )

    snapshot = {**common, "updates": [], "paused": False}
    page1 = expect(api.get(deployments, params={"page": 1, "pageSize": 1, "asc": "true"}), 200)
    assert page1 == {"deployments": [snapshot], "itemsPerPage": 1, "total": 2}
    page2 = expect(api.get(deployments, params={"page": 2, "pageSize": 1, "asc": "true"}), 200)
    assert ([d["id"] for d in page2["deployments"]], page2["itemsPerPage"], page2["total"]) == ([second["id"]], 1, 2)
    newest_first = expect(api.get(deployments), 200)
    assert [d["id"] for d in newest_first["deployments"]] == [second["id"], first["id"]]
    assert (newest_first["itemsPerPage"], newest_first["total"]) == (10, 2)
    assert expect(api.get(deployments, params={"page": 3, "pageSize": 1}), 200) == {
        "deployments": [],
        "itemsPerPage": 1,
        "total": 2,
    }
    assert expect(api.get(deployments, params={"pageSize": 0}), 400) == error(400, "pageSize must be between 1 and 100")
    assert expect(api.get(deployments, params={"pageSize": 101}), 400) == error(
        400, "pageSize must be between 1 and 100"
    )
    assert expect(api.get(deployments, params={"page": 0}), 400) == error(400, "page starts at 1")

    in_org = expect(api.get(f"/api/orgs/{org}/deployments", params={"asc": "true"}), 200)
    assert in_org == {"deployments": [snapshot, page2["deployments"][0]], "itemsPerPage": 10, "total": 2}

    after_deploys = expect(api.get(stack), 200)
    assert after_deploys == {**stack_body, "activeUpdate": second["id"], "version": 2}

    # --- metadata, pause and resume ----------------------------------------------------------------
    def stack_meta(paused: bool, stack_paused: bool, org_paused: bool, **by_status: int) -> dict[str, Any]:
        return {
            "paused": paused,
            "stackPaused": stack_paused,
            "organizationPaused": org_paused,
            "hasSchedules": False,
            "concurrency": 1,
            "deploymentCounts": counts(**by_status),
        }

    meta_url = f"{deployments}/metadata"
    org_meta_url = f"/api/orgs/{org}/deployments/metadata"
    assert expect(api.get(meta_url), 200) == stack_meta(False, False, False, notStarted=2)
    assert expect(api.patch(f"/api/orgs/{org}/settings", json={"concurrency": 7}), 200) == {
        "paused": False,
        "concurrency": 7,
        "cascadeMode": "coalesced",
        "deploymentCounts": counts(notStarted=2),
    }

    for path in (f"{deployments}/pause", f"/api/orgs/{org}/deployments/pause"):
        response = api.post(path)
        assert (response.status_code, response.content) == (200, b"")
    assert expect(api.get(meta_url), 200) == stack_meta(True, True, True, notStarted=2)
    assert expect(api.get(org_meta_url), 200) == {
        "paused": True,
        "concurrency": 7,
        "cascadeMode": "coalesced",
        "deploymentCounts": counts(notStarted=2),
    }
    assert [d["paused"] for d in expect(api.get(deployments), 200)["deployments"]] == [True, True]

    assert api.post(f"/api/orgs/{org}/deployments/resume").status_code == 200
    assert expect(api.get(meta_url), 200) == stack_meta(True, True, False, notStarted=2)
    assert api.post(f"{deployments}/resume").status_code == 200
    assert expect(api.get(meta_url), 200) == stack_meta(False, False, False, notStarted=2)
    assert expect(api.get(org_meta_url), 200)["paused"] is False

    # --- cancel ------------------------------------------------------------------------------------
    cancelled = expect(api.post(f"{deployments}/{first['id']}/cancel"), 200)
    assert cancelled == {
        "id": first["id"],
        "status": "skipped",
        "reason": f"cancelled by {ADMIN_NAME}",
        "cancelRequested": False,
    }
    skipped = expect(api.get(f"{deployments}/{first['id']}"), 200)
    assert TIMESTAMP.match(skipped["finished"])
    assert skipped == {
        **got,
        "status": "skipped",
        "reason": f"cancelled by {ADMIN_NAME}",
        "modified": skipped["finished"],
        "finished": skipped["finished"],
        "jobs": [{"status": "skipped", "steps": [], "lastUpdated": skipped["finished"]}],
    }
    assert expect(api.post(f"{deployments}/{first['id']}/cancel"), 409) == error(
        409, f"deployment {first['id']} already finished (skipped); nothing to cancel"
    )
    assert expect(api.get(meta_url), 200)["deploymentCounts"] == counts(notStarted=1, skipped=1)

    # --- delete ------------------------------------------------------------------------------------
    assert expect(api.delete(settings), 200) is True
    assert expect(api.delete(settings), 404) == no_settings
    assert expect(api.get(settings), 404) == no_settings

    deleted = api.delete(stack)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert expect(api.get(stack), 404) == error(404, f"stack {ref} not found")
    assert expect(api.get(f"{deployments}/{second['id']}"), 404) == error(404, f"stack {ref} not found")
    assert api.head(stacks).status_code == 404
    assert expect(api.get(f"/api/orgs/{org}/deployments"), 200) == {"deployments": [], "itemsPerPage": 10, "total": 0}
    assert expect(api.get("/api/user/stacks", params={"organization": org}), 200) == {"stacks": []}

    recorder.assert_never_contains(secret)


def test_roles_decide_between_403_and_404(
    api: httpx2.Client, client_for: Callable[[str | None], httpx2.Client], recorder: Recorder, org: str, secret: str
) -> None:
    stack = f"/api/stacks/{org}/{PROJECT}/{STACK}"
    expect(api.post(f"/api/stacks/{org}/{PROJECT}", json={"stackName": STACK}), 200)
    expect(
        api.post(
            f"{stack}/deployments/settings",
            json={
                "sourceContext": {"git": {"repoUrl": REPO}},
                "operationContext": {"environmentVariables": {"K": {"secret": secret}}},
            },
        ),
        200,
    )
    deployment = expect(api.post(f"{stack}/deployments", json={"operation": "update"}), 202)

    viewer = client_for(issue_token(api, org, "viewer"))
    assert expect(viewer.get(stack), 200)["stackName"] == STACK
    assert expect(viewer.get(f"{stack}/deployments/{deployment['id']}"), 200)["status"] == "not-started"
    seen = expect(viewer.get(f"{stack}/deployments/settings"), 200)
    assert seen["operationContext"]["environmentVariables"]["K"]["secret"] == MASK
    needs_member = error(403, f"role viewer in organization {org!r} may not do this: needs member")
    writes = [
        viewer.post(f"/api/stacks/{org}/{PROJECT}", json={"stackName": "dev"}),
        viewer.post(f"{stack}/deployments/settings", json={"tag": "x"}),
        viewer.put(f"{stack}/deployments/settings", json={"tag": "x"}),
        viewer.delete(f"{stack}/deployments/settings"),
        viewer.post(f"{stack}/deployments", json={"operation": "update"}),
        viewer.post(f"{stack}/deployments/{deployment['id']}/cancel"),
        viewer.post(f"{stack}/deployments/pause"),
        viewer.delete(stack),
    ]
    for response in writes:
        assert expect(response, 403) == needs_member
    assert expect(viewer.post(f"/api/orgs/{org}/deployments/pause"), 403) == error(
        403, f"role viewer in organization {org!r} may not do this: needs admin"
    )

    outsider = client_for(issue_token(api, f"{org}-other", "admin"))
    assert expect(outsider.get(stack), 404) == error(404, f"stack {org}/{PROJECT}/{STACK} not found")
    assert expect(outsider.get(f"{stack}/deployments/settings"), 404)["code"] == 404
    assert expect(outsider.get(f"{stack}/deployments/{deployment['id']}"), 404)["code"] == 404
    assert expect(outsider.post(f"{stack}/deployments", json={"operation": "update"}), 404)["code"] == 404
    assert expect(outsider.get(f"/api/orgs/{org}/deployments"), 404) == error(404, f"organization {org!r} not found")
    assert outsider.head(f"/api/stacks/{org}/{PROJECT}").status_code == 404
    assert expect(outsider.get("/api/user/stacks"), 200) == {"stacks": []}

    anonymous = client_for(None)
    assert expect(anonymous.get(stack), 401)["code"] == 401
    assert expect(client_for("csc_not_a_token").get(stack), 401) == error(401, "invalid or expired token")

    assert expect(api.get(stack), 200)["version"] == 1  # nothing above changed the stack
    recorder.assert_never_contains(secret)


def test_bad_requests_get_400_with_a_message_that_says_what_to_fix(api: httpx2.Client, org: str) -> None:
    stacks = f"/api/stacks/{org}/{PROJECT}"
    stack = f"{stacks}/{STACK}"
    assert expect(api.post(stacks), 400) == error(400, "the request needs a JSON object body")
    malformed = expect(api.post(stacks, content=b"{nope", headers={"Content-Type": "application/json"}), 400)
    assert malformed["message"].startswith("malformed JSON in request body: ")
    assert expect(api.post(stacks, json=["prod"]), 400) == error(
        400, "the request body must be a JSON object, not list"
    )
    assert expect(api.post(stacks, json={"tags": {}}), 400) == error(400, "'stackName' is required")
    expect(api.post(stacks, json={"stackName": STACK}), 200)

    settings = f"{stack}/deployments/settings"
    both = {"sourceContext": {"git": {"repoUrl": REPO, "branch": "main", "commit": "0a1b2c3"}}}
    assert expect(api.post(settings, json=both), 400) == error(
        400, "sourceContext.git: give either 'branch' or 'commit', not both"
    )
    forged = {"operationContext": {"environmentVariables": {"K": {"ciphertext": base64.b64encode(b"forged").decode()}}}}
    assert expect(api.post(settings, json=forged), 400) == error(
        400,
        'operationContext.environmentVariables.K: the ciphertext was not sealed by this server; send the value as {"secret": ...}',
    )
    assert expect(api.post(settings, json={"operationContext": {"environmentVariables": {"N": 1}}}), 400) == error(
        400,
        'operationContext.environmentVariables.N must be a string or {"secret": "value"}; quote numbers and booleans',
    )
    assert expect(api.get(settings), 404)["code"] == 404  # nothing was saved

    deployments = f"{stack}/deployments"
    assert expect(api.post(deployments, json={}), 400) == error(
        400, "'operation' is required: one of update, preview, refresh, destroy"
    )
    assert expect(api.post(deployments, json={"operation": "deploy"}), 400) == error(
        400, "unknown operation 'deploy': use one of update, preview, refresh, destroy"
    )
    assert expect(api.post(deployments, json={"operation": "update"}), 400) == error(
        400,
        f"no source for stack {org}/{PROJECT}/{STACK}: save deployment settings with sourceContext.git.repoUrl, "
        "or give sourceContext in the request",
    )
    assert expect(api.post(deployments, json={"operation": "update", "inheritSettings": "yes"}), 400) == error(
        400, "'inheritSettings' must be true or false"
    )
    assert expect(api.get(deployments), 200) == {"deployments": [], "itemsPerPage": 10, "total": 0}
