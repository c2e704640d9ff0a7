"""``cascade token create|ls|rm``, and what a token's role lets it do through the CLI."""

from __future__ import annotations

import json

from tests.cli.cli_support import Cascade, failed, ok, rows


def test_an_org_viewer_token_reads_but_cannot_write(cascade: Cascade, org: str) -> None:
    created = ok(cascade.as_admin("token", "create", "--org", org, "--role", "viewer", "--name", "ci-reader"))
    token = created.stdout.strip()
    assert token.startswith("csc_")
    assert "\n" not in token  # the token alone on stdout, for T=$(cascade token create ...)
    assert "Created token 'ci-reader' (viewer in" in created.stderr
    assert "shown only once" in created.stderr

    ok(cascade.as_admin("stack", "create", f"{org}/net/prod"))
    listing = json.loads(ok(cascade.as_token(token, "stack", "ls", "--org", org, "--json")).stdout)
    assert [s["stackName"] for s in listing["stacks"]] == ["prod"]

    failed(
        cascade.as_token(token, "stack", "create", f"{org}/net/dev"),
        f"error: role viewer in organization '{org}' may not do this: needs member (403)",
    )
    failed(cascade.as_token(token, "stack", "rm", f"{org}/net/prod", "--yes"), "(403)")
    failed(cascade.as_token(token, "token", "ls"), "only admins may list tokens (403)")


def test_token_ls_shows_tokens_but_never_their_values(cascade: Cascade, org: str) -> None:
    issued = json.loads(ok(cascade.as_admin("token", "create", "--org", org, "--role", "member", "--json")).stdout)
    assert issued["token"].startswith("csc_")
    assert (issued["org"], issued["role"], issued["kind"]) == (org, "member", "org")

    table = ok(cascade.as_admin("token", "ls"))
    assert issued["token"] not in table.output
    (row,) = [r for r in rows(table) if r[0] == issued["id"]]
    assert row[1:5] == [f"{org}-member", "org", org, "member"]

    listing = json.loads(ok(cascade.as_admin("token", "ls", "--json")).stdout)
    assert issued["id"] in {t["id"] for t in listing["tokens"]}
    assert issued["token"] not in json.dumps(listing)


def test_a_revoked_token_stops_working(cascade: Cascade, org: str) -> None:
    issued = json.loads(ok(cascade.as_admin("token", "create", "--org", org, "--json")).stdout)
    ok(cascade.as_token(issued["token"], "stack", "ls", "--org", org))

    assert ok(cascade.as_admin("token", "rm", issued["id"])).stdout.strip() == f"Revoked token {issued['id']}"
    failed(cascade.as_token(issued["token"], "stack", "ls", "--org", org), "invalid or expired token (401)")
    failed(cascade.as_admin("token", "rm", issued["id"]), "not found (404)")
    other = json.loads(ok(cascade.as_admin("token", "create", "--org", org, "--json")).stdout)
    revoked = json.loads(ok(cascade.as_admin("token", "rm", other["id"], "--json")).stdout)
    assert revoked == {"id": other["id"], "revoked": True}
    failed(cascade.as_token(other["token"], "stack", "ls", "--org", org), "invalid or expired token (401)")


def test_an_org_admin_cannot_mint_admin_tokens(cascade: Cascade, org: str) -> None:
    org_admin = ok(cascade.as_admin("token", "create", "--org", org, "--role", "admin")).stdout.strip()
    failed(cascade.as_token(org_admin, "token", "create"), "only an admin token may create admin tokens (403)")
    viewer = ok(cascade.as_token(org_admin, "token", "create", "--org", org, "--role", "viewer")).stdout.strip()
    assert viewer.startswith("csc_")


def test_a_runner_token_has_no_org_or_role(cascade: Cascade, org: str) -> None:
    failed(cascade.as_admin("token", "create", "--runner", "--org", org), "a runner token has no organization or role")
    issued = json.loads(ok(cascade.as_admin("token", "create", "--runner", "--name", "build-box", "--json")).stdout)
    assert (issued["kind"], issued["name"], issued["org"]) == ("runner", "build-box", None)
