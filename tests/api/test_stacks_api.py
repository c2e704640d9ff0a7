"""Stacks over real HTTP: create, names, read, list, delete, and the events they write."""

from __future__ import annotations

import base64
import json
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

RULE = "1-100 characters of letters, digits, '_', '.' or '-'"
SOURCE = {"sourceContext": {"git": {"repoUrl": "https://example.com/infra.git", "branch": "main"}}}


def create(client: httpx2.Client, org: str, project: str, stack: str, **body: Any) -> httpx2.Response:
    return client.post(f"/api/stacks/{org}/{project}", json={"stackName": stack, **body})


def make_stack(
    client: httpx2.Client, org: str, project: str = "proj", stack: str = "dev", **body: Any
) -> dict[str, Any]:
    response = create(client, org, project, stack, **body)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
async def db(live_server: LiveServer) -> AsyncIterator[Database]:
    """The live server's database, opened from the test (to inspect events and to claim work)."""
    database = Database(live_server.database_url)
    try:
        yield database
    finally:
        await database.dispose()


async def org_events(db: Database, org: str) -> list[Any]:
    async with db.read() as conn:
        return list((await conn.execute(sa.select(events).where(events.c.org == org).order_by(events.c.id))).all())


# --- create --------------------------------------------------------------------------------------


def test_creating_a_stack_answers_with_messages_and_the_stack(admin: httpx2.Client, org: str) -> None:
    created = make_stack(admin, org, "proj", "dev", tags={"env": "dev"})
    assert created["messages"] == []
    assert created["orgName"] == org
    assert created["projectName"] == "proj"
    assert created["stackName"] == "dev"
    assert created["tags"] == {"env": "dev"}
    assert created["version"] == 0
    assert created["activeUpdate"] == ""
    assert isinstance(created["id"], str) and created["id"]


def test_creating_the_same_stack_twice_is_a_conflict(admin: httpx2.Client, org: str) -> None:
    first = make_stack(admin, org)
    assert_error(create(admin, org, "proj", "dev"), 409, f"stack {org}/proj/dev already exists")
    assert admin.get(f"/api/stacks/{org}/proj/dev").json()["id"] == first["id"]


def test_the_same_stack_name_in_another_project_or_org_is_a_different_stack(admin: httpx2.Client, org: str) -> None:
    ids = {make_stack(admin, org, "a", "dev")["id"], make_stack(admin, org, "b", "dev")["id"]}
    ids.add(make_stack(admin, org + "-2", "a", "dev")["id"])
    assert len(ids) == 3


def test_concurrent_creates_of_one_stack_make_exactly_one(live_server: LiveServer, org: str) -> None:
    def attempt(_: int) -> int:
        with httpx2.Client(
            base_url=live_server.url, headers={"Authorization": f"token {live_server.admin_token}"}, timeout=30
        ) as c:
            return create(c, org, "proj", "race").status_code

    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(attempt, range(8)))
    assert codes == [200] + [409] * 7


def test_concurrent_creates_of_different_stacks_in_a_new_org_all_succeed(live_server: LiveServer, org: str) -> None:
    def attempt(i: int) -> httpx2.Response:
        with httpx2.Client(
            base_url=live_server.url, headers={"Authorization": f"token {live_server.admin_token}"}, timeout=30
        ) as c:
            return create(c, org, "proj", f"s{i}")

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(attempt, range(8)))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]


@pytest.mark.parametrize(
    ("stack", "message"),
    [
        ("bad name", f"invalid stack name 'bad name': use {RULE}"),
        ("x" * 101, f"invalid stack name '{'x' * 101}': use {RULE}"),
        ("", f"invalid stack name '': use {RULE}"),
        ("a/b", f"invalid stack name 'a/b': use {RULE}"),
        ("ünïcode", f"invalid stack name 'ünïcode': use {RULE}"),
        (".hidden", "invalid stack name '.hidden': a stack name may not start with '.'"),
        (5, f"invalid stack name 5: use {RULE}"),
        (["dev"], f"invalid stack name ['dev']: use {RULE}"),
    ],
)
def test_invalid_stack_names_are_a_400_with_the_rule(
    admin: httpx2.Client, org: str, stack: object, message: str
) -> None:
    assert_error(admin.post(f"/api/stacks/{org}/proj", json={"stackName": stack}), 400, message)
    assert admin.head(f"/api/stacks/{org}/proj").status_code == 404


def test_a_missing_stack_name_is_a_400(admin: httpx2.Client, org: str) -> None:
    assert_error(admin.post(f"/api/stacks/{org}/proj", json={}), 400, "'stackName' is required")
    assert_error(admin.post(f"/api/stacks/{org}/proj", json={"stackName": None}), 400, "'stackName' is required")


@pytest.mark.parametrize(
    ("project", "message"),
    [
        (".proj", "invalid project name '.proj': a project name may not start with '.'"),
        ("bad%20proj", f"invalid project name 'bad proj': use {RULE}"),
        ("p" * 101, f"invalid project name '{'p' * 101}': use {RULE}"),
        ("a%2Bb", f"invalid project name 'a+b': use {RULE}"),
    ],
)
def test_invalid_project_names_are_a_400_with_the_rule(
    admin: httpx2.Client, org: str, project: str, message: str
) -> None:
    assert_error(admin.post(f"/api/stacks/{org}/{project}", json={"stackName": "dev"}), 400, message)


def test_an_invalid_org_name_is_a_400_but_an_org_may_start_with_a_dot(admin: httpx2.Client, org: str) -> None:
    assert_error(create(admin, "bad%20org", "proj", "dev"), 400, f"invalid organization name 'bad org': use {RULE}")
    make_stack(admin, "." + org)
    assert admin.get(f"/api/stacks/.{org}/proj/dev").status_code == 200


@pytest.mark.parametrize("name", ["x" * 100, "a", "A.b-c_9", "v1.2", "trailing."])
def test_names_at_the_edges_of_the_rule_are_accepted(admin: httpx2.Client, org: str, name: str) -> None:
    make_stack(admin, org, name, name)
    assert admin.get(f"/api/stacks/{org}/{name}/{name}").json()["stackName"] == name


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        (["env"], "tags must be an object of name: value strings"),
        ("env=dev", "tags must be an object of name: value strings"),
        ({"env": 1}, "tag 'env': names are 1-40 characters and values strings of at most 256"),
        ({"": "v"}, "tag '': names are 1-40 characters and values strings of at most 256"),
        ({"n" * 41: "v"}, f"tag '{'n' * 41}': names are 1-40 characters and values strings of at most 256"),
        ({"env": "v" * 257}, "tag 'env': names are 1-40 characters and values strings of at most 256"),
        ({f"t{i}": "v" for i in range(101)}, "a stack may have at most 100 tags"),
    ],
)
def test_invalid_tags_are_a_400(admin: httpx2.Client, org: str, tags: object, message: str) -> None:
    assert_error(create(admin, org, "proj", "dev", tags=tags), 400, message)
    assert admin.get(f"/api/stacks/{org}/proj/dev").status_code == 404


def test_null_tags_mean_no_tags(admin: httpx2.Client, org: str) -> None:
    assert make_stack(admin, org, tags=None)["tags"] == {}


# --- read ----------------------------------------------------------------------------------------


def test_head_project_answers_200_when_it_has_a_stack_and_404_otherwise(admin: httpx2.Client, org: str) -> None:
    assert admin.head(f"/api/stacks/{org}/proj").status_code == 404
    make_stack(admin, org)
    found = admin.head(f"/api/stacks/{org}/proj")
    assert found.status_code == 200
    assert found.content == b""
    assert admin.head(f"/api/stacks/{org}/other").status_code == 404
    assert admin.delete(f"/api/stacks/{org}/proj/dev").status_code == 204
    assert admin.head(f"/api/stacks/{org}/proj").status_code == 404


def test_get_stack_has_the_contract_shape(admin: httpx2.Client, org: str) -> None:
    created = make_stack(admin, org, tags={"team": "infra"})
    response = admin.get(f"/api/stacks/{org}/proj/dev")
    assert response.status_code == 200
    stack = response.json()
    assert {"id", "orgName", "projectName", "stackName", "activeUpdate", "tags", "version"} <= stack.keys()
    assert stack["id"] == created["id"]
    assert (stack["orgName"], stack["projectName"], stack["stackName"]) == (org, "proj", "dev")
    assert stack["tags"] == {"team": "infra"}
    assert stack["activeUpdate"] == ""
    assert stack["version"] == 0


def test_get_stack_reflects_its_latest_deployment(admin: httpx2.Client, org: str) -> None:
    make_stack(admin, org)
    url = f"/api/stacks/{org}/proj/dev/deployments"
    admin.post(url, json={"operation": "update", **SOURCE}).raise_for_status()
    second = admin.post(url, json={"operation": "preview", **SOURCE}).json()
    stack = admin.get(f"/api/stacks/{org}/proj/dev").json()
    assert stack["activeUpdate"] == second["id"]
    assert stack["version"] == 2


def test_get_of_a_missing_stack_is_a_404(admin: httpx2.Client, org: str) -> None:
    assert_error(admin.get(f"/api/stacks/{org}/proj/nope"), 404, f"stack {org}/proj/nope not found")


# --- list ----------------------------------------------------------------------------------------


def names(listing: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["projectName"], s["stackName"]) for s in listing["stacks"]]


def test_list_stacks_of_an_org_has_the_contract_shape(live_server: LiveServer, admin: httpx2.Client, org: str) -> None:
    created = make_stack(admin, org)
    make_stack(admin, org + "-elsewhere")
    response = admin.get("/api/user/stacks", params={"organization": org})
    assert response.status_code == 200
    listing = response.json()
    assert listing.keys() == {"stacks"}  # no continuationToken on the last page
    assert listing["stacks"] == [
        {
            "id": created["id"],
            "orgName": org,
            "projectName": "proj",
            "stackName": "dev",
            "links": {"self": f"{live_server.url}/{org}/proj/dev"},
        }
    ]


def test_list_stacks_of_an_org_without_stacks_is_empty(admin: httpx2.Client, org: str) -> None:
    assert admin.get("/api/user/stacks", params={"organization": org}).json() == {"stacks": []}


def test_list_stacks_filters_by_project(admin: httpx2.Client, org: str) -> None:
    for project, stack in (("net", "dev"), ("net", "prod"), ("app", "dev")):
        make_stack(admin, org, project, stack)
    listing = admin.get("/api/user/stacks", params={"organization": org, "project": "net"}).json()
    assert names(listing) == [("net", "dev"), ("net", "prod")]
    assert admin.get("/api/user/stacks", params={"organization": org, "project": "none"}).json() == {"stacks": []}


def test_list_stacks_filters_by_tag_name_and_value(admin: httpx2.Client, org: str) -> None:
    make_stack(admin, org, "p", "a", tags={"env": "prod", "team": "x"})
    make_stack(admin, org, "p", "b", tags={"env": "dev"})
    make_stack(admin, org, "p", "c", tags={"team": "x"})
    make_stack(admin, org, "p", "d")
    base = {"organization": org}
    assert names(admin.get("/api/user/stacks", params={**base, "tagName": "env"}).json()) == [("p", "a"), ("p", "b")]
    assert names(admin.get("/api/user/stacks", params={**base, "tagName": "env", "tagValue": "dev"}).json()) == [
        ("p", "b")
    ]
    assert names(admin.get("/api/user/stacks", params={**base, "tagName": "team", "tagValue": "x"}).json()) == [
        ("p", "a"),
        ("p", "c"),
    ]
    assert admin.get("/api/user/stacks", params={**base, "tagName": "env", "tagValue": "qa"}).json() == {"stacks": []}


def test_tag_value_without_tag_name_is_a_400(admin: httpx2.Client, org: str) -> None:
    assert_error(
        admin.get("/api/user/stacks", params={"organization": org, "tagValue": "x"}), 400, "tagValue needs tagName"
    )


def page_through(client: httpx2.Client, params: dict[str, Any]) -> tuple[list[tuple[str, str]], int]:
    seen: list[tuple[str, str]] = []
    pages = 0
    token: str | None = None
    while True:
        query = dict(params, **({"continuationToken": token} if token else {}))
        response = client.get("/api/user/stacks", params=query)
        assert response.status_code == 200, response.text
        listing = response.json()
        pages += 1
        assert len(listing["stacks"]) <= params["maxResults"]
        seen += names(listing)
        token = listing.get("continuationToken")
        if token is None:
            return seen, pages
        assert pages < 50, "paging does not terminate"


@pytest.mark.parametrize("page_size", [1, 2, 3, 7, 8])
def test_paging_covers_every_stack_exactly_once(admin: httpx2.Client, org: str, page_size: int) -> None:
    wanted = [
        ("a-proj", "Prod"),
        ("a-proj", "dev"),
        ("a-proj", "dev.eu"),
        ("a-proj", "dev_us"),
        ("b", "x"),
        ("b", "y"),
        ("c", "z"),
    ]
    for project, stack in wanted:
        make_stack(admin, org, project, stack)
    seen, pages = page_through(admin, {"organization": org, "maxResults": page_size})
    assert sorted(seen) == sorted(wanted)
    assert len(seen) == len(set(seen))
    assert pages == -(-len(wanted) // page_size)  # no empty trailing page


def test_paging_with_a_tag_filter_covers_each_match_exactly_once(admin: httpx2.Client, org: str) -> None:
    for i in range(6):
        make_stack(admin, org, "p", f"s{i}", tags={"keep": "yes"} if i % 2 == 0 else {"keep": "no"})
    seen, _ = page_through(admin, {"organization": org, "maxResults": 1, "tagName": "keep", "tagValue": "yes"})
    assert seen == [("p", "s0"), ("p", "s2"), ("p", "s4")]


def test_list_without_an_org_shows_an_org_token_only_its_own_stacks(
    live_server: LiveServer, admin: httpx2.Client, org: str
) -> None:
    make_stack(admin, org, "p", "mine")
    make_stack(admin, org + "-x", "p", "theirs")
    token = admin.post("/api/tokens", json={"org": org, "role": "viewer"}).json()["token"]
    with httpx2.Client(base_url=live_server.url, headers={"Authorization": f"token {token}"}, timeout=30) as viewer:
        listing = viewer.get("/api/user/stacks").json()
    assert [(s["orgName"], s["stackName"]) for s in listing["stacks"]] == [(org, "mine")]
    everything, _ = page_through(admin, {"maxResults": 1000})
    assert ("p", "theirs") in everything


@pytest.mark.parametrize("value", ["0", "1001", "-1", "many"])
def test_max_results_out_of_range_is_a_400(admin: httpx2.Client, org: str, value: str) -> None:
    message = assert_error(admin.get("/api/user/stacks", params={"organization": org, "maxResults": value}), 400)
    assert "maxResults" in message


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        base64.urlsafe_b64encode(b"[1, 2, 3]").decode(),
        base64.urlsafe_b64encode(b'["only", "two"]').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b"42").decode(),
    ],
)
def test_a_continuation_token_the_server_did_not_issue_is_a_400(admin: httpx2.Client, org: str, token: str) -> None:
    response = admin.get("/api/user/stacks", params={"organization": org, "continuationToken": token})
    assert_error(response, 400, "continuationToken is not one this server returned")


def test_a_well_formed_foreign_continuation_token_never_errors(admin: httpx2.Client, org: str) -> None:
    make_stack(admin, org, "p", "s")
    token = base64.urlsafe_b64encode(json.dumps([org, "a", "a"]).encode()).decode()
    response = admin.get("/api/user/stacks", params={"organization": org, "continuationToken": token})
    assert response.status_code == 200
    assert names(response.json()) == [("p", "s")]


# --- delete --------------------------------------------------------------------------------------


def test_delete_answers_204_and_then_the_stack_is_gone(admin: httpx2.Client, org: str) -> None:
    make_stack(admin, org)
    response = admin.delete(f"/api/stacks/{org}/proj/dev")
    assert response.status_code == 204
    assert response.content == b""
    assert_error(admin.get(f"/api/stacks/{org}/proj/dev"), 404, f"stack {org}/proj/dev not found")
    assert_error(admin.delete(f"/api/stacks/{org}/proj/dev"), 404, f"stack {org}/proj/dev not found")
    assert admin.get("/api/user/stacks", params={"organization": org}).json() == {"stacks": []}


def test_deleting_a_stack_removes_its_settings_and_queued_deployments(admin: httpx2.Client, org: str) -> None:
    make_stack(admin, org)
    stack = f"/api/stacks/{org}/proj/dev"
    admin.post(f"{stack}/deployments/settings", json=SOURCE).raise_for_status()
    deployment = admin.post(f"{stack}/deployments", json={"operation": "update"}).json()
    assert admin.delete(stack).status_code == 204
    assert admin.get(f"/api/orgs/{org}/deployments").json()["total"] == 0
    recreated = make_stack(admin, org)
    assert recreated["version"] == 0
    assert admin.get(f"{stack}/deployments/{deployment['id']}").status_code == 404
    assert admin.get(f"{stack}/deployments/settings").status_code == 404


async def test_a_stack_with_a_running_deployment_cannot_be_deleted(
    live_server: LiveServer, admin: httpx2.Client, db: Database, org: str
) -> None:
    make_stack(admin, org)
    stack = f"/api/stacks/{org}/proj/dev"
    deployment = admin.post(f"{stack}/deployments", json={"operation": "update", **SOURCE}).json()
    ctx = Context(db=db, secrets=SecretBox.generate(), lease_seconds=600)
    claimed = None
    for _ in range(100):  # other tests on this server may have queued work ahead of ours
        claimed = await queue.claim(ctx, "test-runner")
        if claimed is None or claimed.id == deployment["id"]:
            break
    assert claimed is not None and claimed.id == deployment["id"]
    assert admin.get(f"{stack}/deployments/{deployment['id']}").json()["status"] == "accepted"

    message = f"stack {org}/proj/dev has a deployment running: cancel it or wait, then delete"
    assert_error(admin.delete(stack), 409, message)
    await queue.start(ctx, deployment["id"], "test-runner")
    assert_error(admin.delete(stack), 409, message)
    assert admin.get(stack).status_code == 200

    await queue.finish(ctx, deployment["id"], "test-runner", Status.SUCCEEDED)
    assert admin.delete(stack).status_code == 204


async def test_create_and_delete_write_stack_events(admin: httpx2.Client, db: Database, org: str) -> None:
    created = make_stack(admin, org)
    rejected = create(admin, org, "proj", "dev")  # a refused duplicate emits nothing
    assert rejected.status_code == 409
    assert admin.delete(f"/api/stacks/{org}/proj/dev").status_code == 204
    assert admin.delete(f"/api/stacks/{org}/proj/dev").status_code == 404
    rows = await org_events(db, org)
    assert [r.kind for r in rows] == ["stack_created", "stack_deleted"]
    expected_payload = {"organization": org, "projectName": "proj", "stackName": "dev"}
    for row in rows:
        assert row.stack_id == created["id"]
        assert row.deployment_id is None
        assert row.payload == expected_payload


async def test_a_refused_create_writes_no_event(admin: httpx2.Client, db: Database, org: str) -> None:
    assert create(admin, org, "proj", ".bad").status_code == 400
    assert create(admin, org, "proj", "ok", tags={"x": 1}).status_code == 400
    assert await org_events(db, org) == []
