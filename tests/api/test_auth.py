"""Authentication and authorization over real HTTP (design sections 5.1 and 7)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa

from stackcascade.store.db import Database
from stackcascade.store.schema import tokens as tokens_table
from tests.support import LiveServer, assert_error

HEADER_HINT = "send 'Authorization: token <your token>'"
SOURCE = {"sourceContext": {"git": {"repoUrl": "https://example.com/infra.git", "branch": "main"}}}

Login = Callable[[str], httpx2.Client]


@pytest.fixture
def login(live_server: LiveServer) -> Iterator[Login]:
    """Clients authenticated with a given token value; closed after the test."""
    clients: list[httpx2.Client] = []

    def make(token: str) -> httpx2.Client:
        client = httpx2.Client(base_url=live_server.url, headers={"Authorization": f"token {token}"}, timeout=30)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def issue(client: httpx2.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/api/tokens", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def org_client(admin: httpx2.Client, login: Login, org: str, role: str, name: str | None = None) -> httpx2.Client:
    return login(issue(admin, org=org, role=role, **({"name": name} if name else {}))["token"])


def make_stack(client: httpx2.Client, org: str, project: str = "proj", stack: str = "dev") -> None:
    response = client.post(f"/api/stacks/{org}/{project}", json={"stackName": stack})
    assert response.status_code == 200, response.text


def queue_deployment(client: httpx2.Client, org: str, project: str = "proj", stack: str = "dev") -> dict[str, Any]:
    response = client.post(f"/api/stacks/{org}/{project}/{stack}/deployments", json={"operation": "update", **SOURCE})
    assert response.status_code == 202, response.text
    return dict(response.json())


# --- authentication ------------------------------------------------------------------------------


def test_every_api_route_refuses_a_request_without_a_token(anonymous: httpx2.Client) -> None:
    document = anonymous.get("/api/openapi.json")
    assert document.status_code == 200
    checked = []
    for path, methods in document.json()["paths"].items():
        concrete = re.sub(r"\{version\}", "1", path)
        concrete = re.sub(r"\{[^}]+\}", "x", concrete)
        for method in methods:
            if method not in {"get", "post", "put", "patch", "delete", "head"}:
                continue
            response = anonymous.request(
                method.upper(), concrete, json={} if method in {"post", "put", "patch"} else None
            )
            assert response.status_code == 401, f"{method.upper()} {path} answered {response.status_code}"
            if method != "head":
                assert_error(response, 401, f"missing Authorization header: {HEADER_HINT}")
            checked.append((method, path))
    assert len(checked) >= 20  # the stacks, settings, deployments and tokens routes at least


def test_an_unknown_token_is_refused_with_401(live_server: LiveServer, login: Login, org: str) -> None:
    client = login("csc_not-a-real-token")
    assert_error(client.get(f"/api/user/stacks?organization={org}"), 401, "invalid or expired token")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "token", "tokenabc", "Digest x=y"])
def test_a_malformed_authorization_header_is_refused_with_the_expected_format(
    anonymous: httpx2.Client, org: str, header: str
) -> None:
    response = anonymous.get(f"/api/user/stacks?organization={org}", headers={"Authorization": header})
    assert_error(response, 401, f"malformed Authorization header: {HEADER_HINT}")


def test_the_admin_token_works_with_either_scheme_spelling(live_server: LiveServer, anonymous: httpx2.Client) -> None:
    for header in (
        f"token {live_server.admin_token}",
        f"TOKEN {live_server.admin_token}",
        f"Bearer {live_server.admin_token}",
    ):
        assert anonymous.get("/api/tokens", headers={"Authorization": header}).status_code == 200


@pytest.mark.parametrize("accept", ["application/vnd.pulumi+8", "text/html", "*/*", "application/json"])
def test_any_accept_header_is_fine(admin: httpx2.Client, org: str, accept: str) -> None:
    make_stack(admin, org)
    response = admin.get(f"/api/stacks/{org}/proj/dev", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.json()["stackName"] == "dev"


# --- token storage -------------------------------------------------------------------------------


def test_a_token_value_is_shown_once_and_never_listed(admin: httpx2.Client, org: str) -> None:
    created = issue(admin, org=org, role="viewer", name="ci-reader")
    assert created["token"].startswith("csc_")
    assert created["kind"] == "org"
    assert created["org"] == org
    assert created["role"] == "viewer"
    listing = admin.get("/api/tokens")
    assert listing.status_code == 200
    assert created["token"] not in listing.text
    mine = [t for t in listing.json()["tokens"] if t["id"] == created["id"]]
    assert len(mine) == 1
    assert mine[0].keys() == {"id", "name", "kind", "org", "role", "created", "expires"}
    assert mine[0]["name"] == "ci-reader"


async def test_tokens_are_stored_as_sha256_hashes_only(live_server: LiveServer, admin: httpx2.Client, org: str) -> None:
    created = issue(admin, org=org, role="member")
    db = Database(live_server.database_url)
    try:
        async with db.read() as conn:
            row = (await conn.execute(sa.select(tokens_table).where(tokens_table.c.id == created["id"]))).one()
    finally:
        await db.dispose()
    assert row.hash == hashlib.sha256(created["token"].encode()).hexdigest()
    assert created["token"] not in repr(tuple(row))


def test_a_revoked_token_stops_working(admin: httpx2.Client, login: Login, org: str) -> None:
    created = issue(admin, org=org, role="member")
    client = login(created["token"])
    assert client.get(f"/api/user/stacks?organization={org}").status_code == 200
    assert admin.delete(f"/api/tokens/{created['id']}").status_code == 204
    assert_error(client.get(f"/api/user/stacks?organization={org}"), 401, "invalid or expired token")
    assert_error(admin.delete(f"/api/tokens/{created['id']}"), 404, f"token {created['id']!r} not found")


# --- roles ---------------------------------------------------------------------------------------


def test_the_admin_token_reaches_every_org(admin: httpx2.Client, org: str) -> None:
    other = org + "-b"
    make_stack(admin, org)
    make_stack(admin, other)
    assert admin.get(f"/api/stacks/{org}/proj/dev").status_code == 200
    assert admin.get(f"/api/stacks/{other}/proj/dev").status_code == 200
    assert admin.post(f"/api/orgs/{other}/deployments/pause").status_code == 200


def _org_scoped_requests(org: str, deployment_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    stack = f"/api/stacks/{org}/proj/dev"
    return [
        ("GET", stack, None),
        ("HEAD", f"/api/stacks/{org}/proj", None),
        ("POST", f"/api/stacks/{org}/proj", {"stackName": "new"}),
        ("DELETE", stack, None),
        ("GET", f"/api/user/stacks?organization={org}", None),
        ("GET", f"{stack}/deployments/settings", None),
        ("POST", f"{stack}/deployments/settings", {"tag": "x"}),
        ("PUT", f"{stack}/deployments/settings", {"tag": "x"}),
        ("DELETE", f"{stack}/deployments/settings", None),
        ("POST", f"{stack}/deployments", {"operation": "update"}),
        ("GET", f"{stack}/deployments", None),
        ("GET", f"{stack}/deployments/{deployment_id}", None),
        ("GET", f"{stack}/deployments/version/1", None),
        ("POST", f"{stack}/deployments/{deployment_id}/cancel", None),
        ("GET", f"{stack}/deployments/metadata", None),
        ("POST", f"{stack}/deployments/pause", None),
        ("POST", f"{stack}/deployments/resume", None),
        ("GET", f"/api/orgs/{org}/deployments", None),
        ("GET", f"/api/orgs/{org}/deployments/metadata", None),
        ("POST", f"/api/orgs/{org}/deployments/pause", None),
        ("POST", f"/api/orgs/{org}/deployments/resume", None),
        ("PATCH", f"/api/orgs/{org}/settings", {"concurrency": 3}),
    ]


@pytest.mark.parametrize("role", ["admin", "member", "viewer"])
def test_another_orgs_resources_answer_404_not_403(admin: httpx2.Client, login: Login, org: str, role: str) -> None:
    other = org + "-other"
    make_stack(admin, other)
    admin.post(f"/api/stacks/{other}/proj/dev/deployments/settings", json=SOURCE).raise_for_status()
    deployment = queue_deployment(admin, other)
    outsider = org_client(admin, login, org, role)
    for method, url, body in _org_scoped_requests(other, deployment["id"]):
        response = outsider.request(method, url, json=body)
        assert response.status_code == 404, f"{method} {url} answered {response.status_code}: {response.text}"
        if method != "HEAD":
            assert_error(response, 404)
    # Nothing was changed by the refused writes.
    assert admin.get(f"/api/stacks/{other}/proj/dev").status_code == 200
    got = admin.get(f"/api/stacks/{other}/proj/dev/deployments/{deployment['id']}").json()
    assert got["status"] == "not-started"
    assert admin.get(f"/api/stacks/{other}/proj/new").status_code == 404


def test_a_404_for_another_org_does_not_reveal_whether_the_stack_exists(
    admin: httpx2.Client, login: Login, org: str
) -> None:
    other = org + "-other"
    make_stack(admin, other)
    outsider = org_client(admin, login, org, "admin")
    existing = outsider.get(f"/api/stacks/{other}/proj/dev")
    missing = outsider.get(f"/api/stacks/{other}/proj/nope")
    assert_error(existing, 404, f"stack {other}/proj/dev not found")
    assert_error(missing, 404, f"stack {other}/proj/nope not found")


def test_a_viewer_can_read_everything_in_its_org(admin: httpx2.Client, login: Login, org: str) -> None:
    make_stack(admin, org)
    admin.post(f"/api/stacks/{org}/proj/dev/deployments/settings", json=SOURCE).raise_for_status()
    deployment = queue_deployment(admin, org)
    viewer = org_client(admin, login, org, "viewer")
    stack = f"/api/stacks/{org}/proj/dev"
    for url in (
        stack,
        f"/api/user/stacks?organization={org}",
        "/api/user/stacks",
        f"{stack}/deployments/settings",
        f"{stack}/deployments",
        f"{stack}/deployments/{deployment['id']}",
        f"{stack}/deployments/version/{deployment['version']}",
        f"{stack}/deployments/metadata",
        f"/api/orgs/{org}/deployments",
        f"/api/orgs/{org}/deployments/metadata",
    ):
        response = viewer.get(url)
        assert response.status_code == 200, f"GET {url}: {response.text}"
    assert viewer.head(f"/api/stacks/{org}/proj").status_code == 200
    listed = viewer.get("/api/user/stacks").json()["stacks"]
    assert [(s["orgName"], s["stackName"]) for s in listed] == [(org, "dev")]


def test_a_viewer_gets_403_on_every_write(admin: httpx2.Client, login: Login, org: str) -> None:
    make_stack(admin, org)
    admin.post(f"/api/stacks/{org}/proj/dev/deployments/settings", json=SOURCE).raise_for_status()
    deployment = queue_deployment(admin, org)
    viewer = org_client(admin, login, org, "viewer")
    stack = f"/api/stacks/{org}/proj/dev"
    needs_member = f"role viewer in organization '{org}' may not do this: needs member"
    needs_admin = f"role viewer in organization '{org}' may not do this: needs admin"
    for method, url, body, message in (
        ("POST", f"/api/stacks/{org}/proj", {"stackName": "other"}, needs_member),
        ("DELETE", stack, None, needs_member),
        ("POST", f"{stack}/deployments/settings", {"tag": "v"}, needs_member),
        ("PUT", f"{stack}/deployments/settings", {"tag": "v"}, needs_member),
        ("DELETE", f"{stack}/deployments/settings", None, needs_member),
        ("POST", f"{stack}/deployments", {"operation": "update"}, needs_member),
        ("POST", f"{stack}/deployments/{deployment['id']}/cancel", None, needs_member),
        ("POST", f"{stack}/deployments/pause", None, needs_member),
        ("POST", f"{stack}/deployments/resume", None, needs_member),
        ("POST", f"/api/orgs/{org}/deployments/pause", None, needs_admin),
        ("POST", f"/api/orgs/{org}/deployments/resume", None, needs_admin),
        ("PATCH", f"/api/orgs/{org}/settings", {"concurrency": 2}, needs_admin),
    ):
        assert_error(viewer.request(method, url, json=body), 403, message)
    # The refused writes left everything as it was.
    assert admin.get(f"/api/stacks/{org}/proj/other").status_code == 404
    settings = admin.get(f"{stack}/deployments/settings").json()
    assert "tag" not in settings
    assert settings["version"] == 1
    assert admin.get(f"{stack}/deployments/{deployment['id']}").json()["status"] == "not-started"
    listing = admin.get(f"{stack}/deployments").json()
    assert listing["total"] == 1
    meta = admin.get(f"{stack}/deployments/metadata").json()
    assert meta["stackPaused"] is False
    assert meta["organizationPaused"] is False


def test_a_member_can_create_configure_deploy_cancel_and_pause_its_stack(
    admin: httpx2.Client, login: Login, org: str
) -> None:
    member = org_client(admin, login, org, "member", name="alice")
    make_stack(member, org)
    stack = f"/api/stacks/{org}/proj/dev"
    assert member.post(f"{stack}/deployments/settings", json=SOURCE).status_code == 200
    deployment = queue_deployment(member, org)
    cancelled = member.post(f"{stack}/deployments/{deployment['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["reason"] == "cancelled by alice"
    assert member.post(f"{stack}/deployments/pause").status_code == 200
    assert member.get(f"{stack}/deployments/metadata").json()["stackPaused"] is True
    assert member.delete(f"{stack}/deployments/settings").status_code == 200
    assert member.delete(stack).status_code == 204


def test_a_member_can_deploy_but_not_pause_the_org(admin: httpx2.Client, login: Login, org: str) -> None:
    make_stack(admin, org)
    member = org_client(admin, login, org, "member")
    queue_deployment(member, org)
    message = f"role member in organization '{org}' may not do this: needs admin"
    assert_error(member.post(f"/api/orgs/{org}/deployments/pause"), 403, message)
    assert_error(member.post(f"/api/orgs/{org}/deployments/resume"), 403, message)
    assert admin.get(f"/api/orgs/{org}/deployments/metadata").json()["paused"] is False


def test_an_org_admin_can_pause_and_resume_its_org(admin: httpx2.Client, login: Login, org: str) -> None:
    owner = org_client(admin, login, org, "admin")
    assert owner.post(f"/api/orgs/{org}/deployments/pause").status_code == 200
    assert owner.get(f"/api/orgs/{org}/deployments/metadata").json()["paused"] is True
    assert owner.post(f"/api/orgs/{org}/deployments/resume").status_code == 200
    assert owner.get(f"/api/orgs/{org}/deployments/metadata").json()["paused"] is False


# --- token management by role --------------------------------------------------------------------


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_an_org_admin_creates_working_tokens_for_its_org(
    admin: httpx2.Client, login: Login, org: str, role: str
) -> None:
    make_stack(admin, org)
    owner = org_client(admin, login, org, "admin")
    created = issue(owner, org=org, role=role)
    assert (created["kind"], created["org"], created["role"]) == ("org", org, role)
    client = login(created["token"])
    assert client.get(f"/api/stacks/{org}/proj/dev").status_code == 200
    expected = 200 if role == "member" else 403
    assert client.post(f"/api/stacks/{org}/proj", json={"stackName": "made"}).status_code == expected


def test_an_org_admin_cannot_create_tokens_for_another_org(admin: httpx2.Client, login: Login, org: str) -> None:
    owner = org_client(admin, login, org, "admin")
    other = org + "-other"
    for role in ("member", "viewer", "admin"):
        assert_error(
            owner.post("/api/tokens", json={"org": other, "role": role}), 404, f"organization {other!r} not found"
        )


def test_an_org_admin_cannot_create_admin_or_runner_tokens(admin: httpx2.Client, login: Login, org: str) -> None:
    owner = org_client(admin, login, org, "admin")
    assert_error(owner.post("/api/tokens", json={}), 403, "only an admin token may create admin tokens")
    assert_error(owner.post("/api/tokens", json={"role": "admin"}), 403, "only an admin token may create admin tokens")
    assert_error(owner.post("/api/tokens", json={"runner": True}), 403, "only an admin token may create runner tokens")


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_create_or_list_tokens(
    admin: httpx2.Client, login: Login, org: str, role: str
) -> None:
    client = org_client(admin, login, org, role)
    for wanted in ("viewer", "member"):
        response = client.post("/api/tokens", json={"org": org, "role": wanted})
        assert_error(response, 403, f"role {role} in organization '{org}' may not do this: needs admin")
    assert_error(client.get("/api/tokens"), 403, "only admins may list tokens")


def test_an_org_admin_lists_and_revokes_only_its_orgs_tokens(admin: httpx2.Client, login: Login, org: str) -> None:
    owner_token = issue(admin, org=org, role="admin")
    owner = login(owner_token["token"])
    mine = issue(owner, org=org, role="viewer")
    theirs = issue(admin, org=org + "-other", role="viewer")
    listed = owner.get("/api/tokens")
    assert listed.status_code == 200
    orgs = {t["org"] for t in listed.json()["tokens"]}
    assert orgs == {org}
    assert {owner_token["id"], mine["id"]} <= {t["id"] for t in listed.json()["tokens"]}
    assert_error(owner.delete(f"/api/tokens/{theirs['id']}"), 404, f"token {theirs['id']!r} not found")
    assert owner.delete(f"/api/tokens/{mine['id']}").status_code == 204
    assert login(theirs["token"]).get(f"/api/user/stacks?organization={org}-other").status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"org": "acme", "role": "owner"}, "unknown role 'owner': use admin, member or viewer"),
        ({"org": "bad org", "role": "viewer"}, "invalid organization name 'bad org'"),
        ({"org": 5}, "'org' must be a string"),
        ({"role": ["admin"]}, "'role' must be a string"),
        ({"name": {"n": 1}}, "'name' must be a string"),
        ({"runner": "yes"}, "'runner' must be true or false"),
        ({"role": "viewer"}, "give --org for a member or viewer token; without an org the token is an admin token"),
    ],
)
def test_token_requests_are_validated(admin: httpx2.Client, body: dict[str, Any], message: str) -> None:
    assert assert_error(admin.post("/api/tokens", json=body), 400).startswith(message)


# --- runner tokens -------------------------------------------------------------------------------


def test_runner_tokens_are_created_by_the_admin(admin: httpx2.Client) -> None:
    created = issue(admin, runner=True, name="build-box")
    assert (created["kind"], created["org"], created["role"], created["name"]) == ("runner", None, None, "build-box")


def test_runner_tokens_get_404_on_ordinary_routes(admin: httpx2.Client, login: Login, org: str) -> None:
    make_stack(admin, org)
    admin.post(f"/api/stacks/{org}/proj/dev/deployments/settings", json=SOURCE).raise_for_status()
    deployment = queue_deployment(admin, org)
    runner = login(issue(admin, runner=True)["token"])
    for method, url, body in _org_scoped_requests(org, deployment["id"]):
        response = runner.request(method, url, json=body)
        assert response.status_code == 404, f"{method} {url} answered {response.status_code}: {response.text}"
    assert_error(runner.get("/api/user/stacks"), 404)
    assert_error(runner.get("/api/tokens"), 403, "only admins may list tokens")
    assert_error(runner.post("/api/tokens", json={"org": org, "role": "viewer"}), 404)
    assert admin.get(f"/api/stacks/{org}/proj/dev/deployments/{deployment['id']}").json()["status"] == "not-started"


def test_concurrent_token_creation_for_a_new_org_all_succeed(live_server: LiveServer, org: str) -> None:
    """The first use of an org creates it; racing first uses must not collide (PostgreSQL)."""

    def attempt(_: int) -> httpx2.Response:
        headers = {"Authorization": f"token {live_server.admin_token}"}
        with httpx2.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
            return client.post("/api/tokens", json={"org": org, "role": "viewer"})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(attempt, range(8)))
    assert [r.status_code for r in responses] == [201] * 8, [r.text for r in responses]
    assert len({r.json()["token"] for r in responses}) == 8


def test_a_revoked_token_stops_working_at_once_despite_the_auth_cache(
    admin: httpx2.Client, live_server: LiveServer, org: str
) -> None:
    created = admin.post("/api/tokens", json={"org": org, "role": "viewer"}).json()
    with httpx2.Client(base_url=live_server.url, headers={"Authorization": f"token {created['token']}"}) as viewer:
        assert viewer.get("/api/user/stacks", params={"organization": org}).status_code == 200  # now cached
        assert admin.delete(f"/api/tokens/{created['id']}").status_code == 204
        assert viewer.get("/api/user/stacks", params={"organization": org}).status_code == 401
