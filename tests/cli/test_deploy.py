"""``cascade deploy``, ``deployments ls|show`` and ``cancel``, checked through the API."""

from __future__ import annotations

import json
import re

import httpx2
import pytest

from tests.cli.cli_support import Cascade, details, failed, ok, rows

SECRET = "one-off-secret-4b2e"


@pytest.fixture
def stack(cascade: Cascade, org: str, admin: httpx2.Client) -> str:
    """A stack with saved settings, paused so its deployments stay queued even once a runner is serving."""
    ref = f"{org}/net/prod"
    ok(cascade.as_admin("stack", "create", ref))
    assert admin.post(api(ref, "pause")).status_code == 200
    ok(
        cascade.as_admin(
            "settings",
            "set",
            ref,
            "--repo-url",
            "https://git.example.com/infra.git",
            "--branch",
            "main",
            "--env",
            "SAVED=yes",
        )
    )
    return ref


def api(stack: str, *more: str) -> str:
    org, project, name = stack.split("/")
    return "/".join([f"/api/stacks/{org}/{project}/{name}/deployments", *more])


def deploy_json(cascade: Cascade, stack: str, *args: str) -> dict[str, object]:
    queued = json.loads(ok(cascade.as_admin("deploy", stack, "--json", *args)).stdout)
    assert isinstance(queued, dict)
    return queued


def test_deploy_prints_id_version_and_console_url(cascade: Cascade, stack: str, admin: httpx2.Client) -> None:
    result = ok(cascade.as_admin("deploy", stack))
    match = re.search(r"id:\s+(\S+)", result.stdout)
    assert match is not None, result.stdout
    deployment = admin.get(api(stack, match.group(1))).json()
    assert result.stdout.splitlines()[0] == f"Queued update of {stack}: version {deployment['version']}"
    assert f"console: {deployment['consoleUrl']}" in result.stdout
    assert deployment["pulumiOperation"] == "update"
    assert deployment["status"] == "not-started"


def test_deploy_overrides_apply_to_this_deployment_only(cascade: Cascade, stack: str, admin: httpx2.Client) -> None:
    result = ok(
        cascade.as_admin(
            "deploy", stack, "--operation", "preview", "--branch", "feature-x",
            "--env", "EXTRA=1", "--secret-env", f"ONE_OFF={SECRET}", "--pre-run", "echo hi",
        )
    )  # fmt: skip
    assert SECRET not in result.output
    deployment_id = re.search(r"id:\s+(\S+)", result.stdout)
    assert deployment_id is not None

    deployment = admin.get(api(stack, deployment_id.group(1))).json()
    assert deployment["pulumiOperation"] == "preview"
    assert deployment["configuration"]["source"]["git"] == {
        "repoURL": "https://git.example.com/infra.git",
        "branch": "feature-x",
    }
    env = {v["name"]: v for v in deployment["configuration"]["environmentVariables"]}
    assert env["SAVED"] == {"name": "SAVED", "secret": False, "value": "yes"}  # inherited
    assert env["EXTRA"] == {"name": "EXTRA", "secret": False, "value": "1"}
    assert env["ONE_OFF"] == {"name": "ONE_OFF", "secret": True}

    saved = admin.get(api(stack, "settings")).json()
    assert saved["sourceContext"]["git"]["branch"] == "main"  # the saved settings are untouched
    assert set(saved["operationContext"]["environmentVariables"]) == {"SAVED"}


def test_deploy_without_inheriting_needs_its_own_source(cascade: Cascade, stack: str, admin: httpx2.Client) -> None:
    failed(
        cascade.as_admin("deploy", stack, "--no-inherit"), "no source for stack", "inheritSettings is false", "(400)"
    )

    queued = deploy_json(cascade, stack, "--no-inherit", "--repo-url", "https://other/r.git", "--commit", "abc123")
    deployment = admin.get(api(stack, str(queued["id"]))).json()
    assert deployment["configuration"]["source"]["git"] == {"repoURL": "https://other/r.git", "commit": "abc123"}
    assert deployment["configuration"]["environmentVariables"] == []  # SAVED was not inherited


def test_deployments_ls_lists_a_stack_and_an_org_with_paging(
    cascade: Cascade, stack: str, org: str, admin: httpx2.Client
) -> None:
    first = deploy_json(cascade, stack)
    second = deploy_json(cascade, stack, "-o", "refresh")
    ok(cascade.as_admin("stack", "create", f"{org}/app/prod"))
    assert admin.post(api(f"{org}/app/prod", "pause")).status_code == 200
    ok(cascade.as_admin("settings", "set", f"{org}/app/prod", "--repo-url", "https://a/r.git"))
    other = deploy_json(cascade, f"{org}/app/prod")

    listing = json.loads(ok(cascade.as_admin("deployments", "ls", stack, "--json")).stdout)
    assert listing["total"] == 2
    assert [d["id"] for d in listing["deployments"]] == [second["id"], first["id"]]  # newest first

    table = rows(ok(cascade.as_admin("deployments", "ls", stack)))
    assert table[0][:4] == ["STACK", "VERSION", "OPERATION", "STATUS"]
    assert [r[:4] for r in table[2:]] == [
        ["net/prod", "2", "refresh", "not-started"],
        ["net/prod", "1", "update", "not-started"],
    ]

    page = ok(cascade.as_admin("deployments", "ls", "--org", org, "--page", "2", "--page-size", "2"))
    ids = {str(d["id"]) for d in (first, second, other)}
    assert [cell for row in rows(page) for cell in row if cell in ids] == [first["id"]]  # the oldest, alone on page 2
    assert page.stdout.rstrip().endswith("Page 2: 1 of 3 deployments; see --page and --page-size")

    whole_org = json.loads(ok(cascade.as_admin("deployments", "ls", "--org", org, "--json")).stdout)
    assert {d["id"] for d in whole_org["deployments"]} == {first["id"], second["id"], other["id"]}


def test_deployments_ls_without_stack_or_org_explains_what_to_give(cascade: Cascade) -> None:
    failed(cascade.as_admin("deployments", "ls"), "no organization", "--org")


def test_deployments_show_by_id_and_by_version(cascade: Cascade, stack: str) -> None:
    queued = deploy_json(cascade, stack, "--secret-env", f"ONE_OFF={SECRET}", "--branch", "dev")

    by_version = ok(cascade.as_admin("deployments", "show", stack, str(queued["version"])))
    by_id = ok(cascade.as_admin("deployments", "show", stack, str(queued["id"])))
    assert by_version.stdout == by_id.stdout
    shown = details(by_id)
    assert shown["id"] == queued["id"]
    assert shown["status"] == "not-started"
    assert shown["branch"] == "dev"
    assert shown["console"] == queued["consoleUrl"]
    assert shown["env ONE_OFF"] == "[secret]"
    assert shown["env SAVED"] == "yes"
    assert SECRET not in by_id.output

    as_json = json.loads(ok(cascade.as_admin("deployments", "show", stack, str(queued["id"]), "--json")).stdout)
    assert as_json["id"] == queued["id"]
    assert as_json["latestVersion"] == queued["version"]

    failed(cascade.as_admin("deployments", "show", stack, "99"), "has no deployment version 99 (404)")


def test_cancel_skips_a_queued_deployment_and_refuses_a_finished_one(
    cascade: Cascade, stack: str, admin: httpx2.Client
) -> None:
    queued = deploy_json(cascade, stack)
    result = ok(cascade.as_admin("cancel", stack, str(queued["id"])))
    assert result.stdout.strip() == f"Cancelled deployment {queued['id']} of {stack}: it will not run (skipped)"
    deployment = admin.get(api(stack, str(queued["id"]))).json()
    assert deployment["status"] == "skipped"
    assert deployment["reason"].startswith("cancelled by")

    failed(cascade.as_admin("cancel", stack, str(queued["id"])), "already finished (skipped)", "(409)")


def test_cancel_takes_a_version_number_as_show_and_logs_do(cascade: Cascade, stack: str, admin: httpx2.Client) -> None:
    queued = deploy_json(cascade, stack)
    result = ok(cascade.as_admin("cancel", stack, str(queued["version"])))
    assert result.stdout.strip() == f"Cancelled deployment {queued['id']} of {stack}: it will not run (skipped)"
    assert admin.get(api(stack, str(queued["id"]))).json()["status"] == "skipped"
    failed(cascade.as_admin("cancel", stack, "99"), "has no deployment version 99 (404)")


def test_cancel_with_json_prints_the_api_answer(cascade: Cascade, stack: str) -> None:
    queued = deploy_json(cascade, stack)
    answer = json.loads(ok(cascade.as_admin("cancel", stack, str(queued["id"]), "--json")).stdout)
    assert answer["id"] == queued["id"]
    assert answer["status"] == "skipped"
