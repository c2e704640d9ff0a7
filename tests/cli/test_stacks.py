"""``cascade stack create|ls|rm`` against the live server."""

from __future__ import annotations

import json

import httpx2

from stackcascade.cli.client import ApiClient
from tests.cli.cli_support import Cascade, failed, ok, rows
from tests.support import LiveServer


def test_create_makes_the_stack_with_its_tags(cascade: Cascade, org: str, admin: httpx2.Client) -> None:
    result = ok(cascade.as_admin("stack", "create", f"{org}/net/prod", "--tag", "team=core", "--tag", "tier=1"))
    assert result.stdout.strip() == f"Created stack {org}/net/prod"
    stack = admin.get(f"/api/stacks/{org}/net/prod").json()
    assert stack["tags"] == {"team": "core", "tier": "1"}


def test_creating_an_existing_stack_fails_with_the_servers_message(cascade: Cascade, org: str) -> None:
    ok(cascade.as_admin("stack", "create", f"{org}/net/prod"))
    failed(cascade.as_admin("stack", "create", f"{org}/net/prod"), f"error: stack {org}/net/prod already exists (409)")


def test_create_with_json_prints_only_the_api_answer(cascade: Cascade, org: str) -> None:
    created = json.loads(ok(cascade.as_admin("stack", "create", f"{org}/net/prod", "--json")).stdout)
    assert (created["orgName"], created["projectName"], created["stackName"]) == (org, "net", "prod")


def test_ls_lists_the_orgs_stacks_filtered_by_project(cascade: Cascade, org: str) -> None:
    for ref in ("net/prod", "net/dev", "app/prod"):
        ok(cascade.as_admin("stack", "create", ref, "--org", org))

    table = rows(ok(cascade.as_admin("stack", "ls", "--org", org)))
    assert table[0] == ["ORG", "PROJECT", "STACK", "CONSOLE"]
    assert sorted(tuple(r[:3]) for r in table[2:]) == [(org, "app", "prod"), (org, "net", "dev"), (org, "net", "prod")]

    listing = json.loads(ok(cascade.as_admin("stack", "ls", "--org", org, "--project", "net", "--json")).stdout)
    assert sorted(s["stackName"] for s in listing["stacks"]) == ["dev", "prod"]


def test_ls_of_an_empty_org_says_so(cascade: Cascade, org: str) -> None:
    assert ok(cascade.as_admin("stack", "ls", "--org", org)).stdout.strip() == "No stacks."


def test_listing_follows_continuation_tokens_of_the_real_server(
    live_server: LiveServer, org: str, admin: httpx2.Client
) -> None:
    names = [f"s{i}" for i in range(5)]
    for name in names:
        assert admin.post(f"/api/stacks/{org}/p", json={"stackName": name}).status_code == 200
    with ApiClient(live_server.url, live_server.admin_token) as api:
        listing = api.list_stacks(org=org, page_size=2)
    assert sorted(s["stackName"] for s in listing["stacks"]) == names


def test_rm_with_yes_deletes_the_stack(cascade: Cascade, org: str, admin: httpx2.Client) -> None:
    ok(cascade.as_admin("stack", "create", f"{org}/net/prod"))
    assert (
        ok(cascade.as_admin("stack", "rm", f"{org}/net/prod", "--yes")).stdout.strip()
        == f"Deleted stack {org}/net/prod"
    )
    assert admin.get(f"/api/stacks/{org}/net/prod").status_code == 404


def test_rm_asks_first_and_keeps_the_stack_when_declined(cascade: Cascade, org: str, admin: httpx2.Client) -> None:
    ok(cascade.as_admin("stack", "create", f"{org}/net/prod"))
    declined = cascade.as_admin("stack", "rm", f"{org}/net/prod", input="n\n")
    assert declined.exit_code == 1
    assert f"Delete stack {org}/net/prod" in declined.stdout
    assert admin.get(f"/api/stacks/{org}/net/prod").status_code == 200

    ok(cascade.as_admin("stack", "rm", f"{org}/net/prod", input="y\n"))
    assert admin.get(f"/api/stacks/{org}/net/prod").status_code == 404


def test_rm_json_prints_the_stack_as_it_was_and_asks_on_stderr(
    cascade: Cascade, org: str, admin: httpx2.Client
) -> None:
    ok(cascade.as_admin("stack", "create", f"{org}/net/prod", "--tag", "team=core"))
    declined = cascade.as_admin("stack", "rm", f"{org}/net/prod", "--json", input="n\n")
    assert declined.exit_code == 1
    assert f"Delete stack {org}/net/prod" in declined.stderr and "Delete" not in declined.stdout
    deleted = ok(cascade.as_admin("stack", "rm", f"{org}/net/prod", "--json", "--yes"))
    stack = json.loads(deleted.stdout)
    assert (stack["projectName"], stack["stackName"], stack["tags"]) == ("net", "prod", {"team": "core"})
    assert admin.get(f"/api/stacks/{org}/net/prod").status_code == 404


def test_rm_of_a_missing_stack_is_a_clean_404(cascade: Cascade, org: str) -> None:
    failed(cascade.as_admin("stack", "rm", f"{org}/net/nope", "--yes"), "(404)")


def test_a_bad_reference_fails_before_any_request(cascade: Cascade) -> None:
    failed(cascade.as_admin("stack", "create", "prod"), "invalid stack 'prod'")
    failed(cascade.as_admin("stack", "create", "net/prod"), "has no organization")


def test_gate_shows_and_sets_whether_the_stack_waits_for_an_approval_in_cascades(
    cascade: Cascade, org: str, admin: httpx2.Client
) -> None:
    stack = f"{org}/app/prod"
    ok(cascade.as_admin("stack", "create", stack))
    shown = ok(cascade.as_admin("stack", "gate", stack))
    assert shown.stdout.startswith(f"Stack {stack} does not require approval: "), shown.stdout

    required = ok(cascade.as_admin("stack", "gate", stack, "--require-approval"))
    assert required.stdout.startswith(f"Stack {stack} now requires approval: in a cascade it waits"), required.stdout
    assert admin.get(f"/api/stacks/{stack}/cascadesettings").json() == {"requireApproval": True}
    node = next(n for n in admin.get(f"/api/orgs/{org}/graph").json()["nodes"] if n["stack"] == "app/prod")
    assert node["requireApproval"] is True
    assert ok(cascade.as_admin("stack", "gate", stack)).stdout.startswith(f"Stack {stack} requires approval: ")
    assert json.loads(ok(cascade.as_admin("stack", "gate", stack, "--json")).stdout) == {"requireApproval": True}

    cleared = json.loads(ok(cascade.as_admin("stack", "gate", stack, "--no-require-approval", "--json")).stdout)
    assert cleared == {"requireApproval": False}
    assert admin.get(f"/api/stacks/{stack}/cascadesettings").json() == {"requireApproval": False}


def test_gate_of_a_missing_stack_is_a_clean_404(cascade: Cascade, org: str) -> None:
    failed(cascade.as_admin("stack", "gate", f"{org}/net/nope"), "(404)")
    failed(cascade.as_admin("stack", "gate", f"{org}/net/nope", "--require-approval"), "(404)")
