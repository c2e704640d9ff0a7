"""``cascade cascade ls|show|approve|reject|retry``, ``plan``, ``graph``, ``notify`` and ``deploy --follow`` of a
cascade, against a live server whose local runners really run the members; the renderers and the follow loop
without a server."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest
from rich.console import Console
from rich.live_render import LiveRender
from typer.testing import CliRunner, Result

from stackcascade.cli import cascades as cascades_cli
from stackcascade.cli import follow
from stackcascade.cli.client import ApiClient
from stackcascade.cli.errors import CliError
from stackcascade.cli.graph import GraphCycle, dot_string, layers, mermaid_text, render_dot, render_mermaid, render_text
from stackcascade.cli.main import app
from stackcascade.cli.refs import StackRef
from tests.cli.cli_support import Cascade, details, failed, ok
from tests.e2e.helpers import cascade_yaml, git_repo
from tests.support import LiveServer

FOLLOW_TIMEOUT = "120"  # --timeout: a cascade that never ends fails the test instead of hanging it
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
DIAMOND = [("network", "database"), ("network", "cluster"), ("database", "app"), ("cluster", "app")]


@pytest.fixture
def cascade(pool_server: LiveServer, config_home: Path) -> Cascade:
    return Cascade(pool_server)


@pytest.fixture
def api(pool_server: LiveServer) -> Iterator[httpx2.Client]:
    with pool_server.client() as client:
        yield client


# -- setting up ------------------------------------------------------------------------------------------------


def stacks(api: httpx2.Client, org: str, projects: list[str], repo: str | None = None) -> None:
    """``org/{project}/prod`` for each project, deploying ``repo`` when given."""
    for project in projects:
        assert api.post(f"/api/stacks/{org}/{project}", json={"stackName": "prod"}).status_code == 200
        if repo is not None:
            settings = {"sourceContext": {"git": {"repoUrl": repo, "branch": "main"}}}
            assert api.post(f"/api/stacks/{org}/{project}/prod/deployments/settings", json=settings).status_code == 200


def edge(api: httpx2.Client, org: str, up: str, down: str, **extra: object) -> None:
    """A deployment edge up/prod -> down/prod on update_succeeded (a pulumi_deployments webhook)."""
    body = {"format": "pulumi_deployments", "payloadUrl": f"{down}/prod", "filters": ["update_succeeded"], **extra}
    response = api.post(f"/api/stacks/{org}/{up}/prod/hooks", json=body)
    assert response.status_code == 201, response.text


def diamond(api: httpx2.Client, org: str, repo: str | None = None, **extras: dict[str, object]) -> None:
    """network -> database, cluster -> app; ``extras["cluster_app"]`` adds fields to that edge."""
    stacks(api, org, ["network", "database", "cluster", "app"], repo)
    for up, down in DIAMOND:
        edge(api, org, up, down, **extras.get(f"{up}_{down}", {}))


def repo_running(tmp_path: Path, update: str = "echo deployed $CASCADE_PROJECT") -> str:
    return git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)})


def wait_cascade(
    api: httpx2.Client, org: str, cascade_id: str, until: Callable[[dict[str, Any]], bool], seconds: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    cascade: dict[str, Any] = {}
    while time.monotonic() < deadline:
        cascade = api.get(f"/api/orgs/{org}/cascades/{cascade_id}").json()
        if until(cascade):
            return cascade
        time.sleep(0.05)
    raise AssertionError(f"cascade {cascade_id} did not get there in {seconds} s: {cascade}")


def ended(cascade: dict[str, Any]) -> bool:
    return cascade["status"] != "running"


def member(cascade: dict[str, Any], stack: str) -> dict[str, Any]:
    return next(m for m in cascade["members"] if m["stack"] == stack)


def cascade_of_deploy(api: httpx2.Client, org: str, project: str = "network") -> str:
    response = api.post(f"/api/stacks/{org}/{project}/prod/deployments", json={"operation": "update"})
    assert response.status_code == 202, response.text
    found = api.get(f"/api/stacks/{org}/{project}/prod/deployments/{response.json()['id']}").json()
    assert found["cascadeId"], found
    return str(found["cascadeId"])


def table_rows(result: Result, first: str) -> list[list[str]]:
    """The rows of the members' table: whitespace-separated cells of the lines after the header ``first``."""
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [first])
    return [line.split() for line in lines[start + 2 :] if line.strip()]


# -- deploy --follow, ls, show ---------------------------------------------------------------------------------


def test_deploy_follow_follows_the_diamond_to_its_end_and_ls_and_show_list_it(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path
) -> None:
    diamond(api, org, repo_running(tmp_path))
    result = ok(cascade.as_admin("deploy", f"{org}/network/prod", "--follow", "--timeout", FOLLOW_TIMEOUT))
    lines = result.stdout.splitlines()
    deployment_id = lines[1].split()[-1]
    cascade_id = api.get(f"/api/stacks/{org}/network/prod/deployments/{deployment_id}").json()["cascadeId"]
    assert f"deployment {deployment_id} succeeded" in lines
    assert any(line.startswith(f"Following cascade {cascade_id}") for line in lines)
    for stack in ("network/prod", "cluster/prod", "database/prod", "app/prod"):  # every member, as it finished
        assert f"[cascade] {stack} succeeded (version 1)" in lines, result.stdout
    assert lines[-1] == f"cascade {cascade_id} succeeded: 4 succeeded"

    table = table_rows(result, "WAVE")  # the members' table after the lines
    assert [row[:5] for row in table[:4]] == [
        ["0", "network/prod", "✓", "succeeded", "1"],
        ["1", "cluster/prod", "✓", "succeeded", "1"],
        ["database/prod", "✓", "succeeded", "1", table[2][4]],  # the same wave: its number only once
        ["2", "app/prod", "✓", "succeeded", "1"],
    ]
    assert all(re.fullmatch(r"\d+\.\ds", row[5 if row[0].isdigit() else 4]) for row in table[:4])  # durations

    listed = ok(cascade.as_admin("cascade", "ls", "--org", org))
    assert listed.stdout.split()[:6] == ["ID", "ROOT", "OPERATION", "STATUS", "CREATED", "FINISHED"]
    row = next(line.split() for line in listed.stdout.splitlines() if cascade_id in line)
    assert row[:4] == [cascade_id, "network/prod", "update", "succeeded"]
    as_json = json.loads(ok(cascade.as_admin("cascade", "ls", "--org", org, "--json", "--limit", "5")).stdout)
    assert as_json == api.get(f"/api/orgs/{org}/cascades", params={"pageSize": 5}).json()
    assert ok(cascade.as_admin("cascade", "list", "--org", org)).stdout == listed.stdout  # the design's name
    succeeded = ok(cascade.as_admin("cascade", "ls", "--org", org, "--status", "succeeded", "--status", "failed"))
    assert cascade_id in succeeded.stdout
    running = ok(cascade.as_admin("cascade", "ls", "--org", org, "--status", "running"))
    assert running.stdout.strip() == f"No running cascades in organization {org}."
    assert cascade.as_admin("cascade", "ls", "--org", org, "--status", "done").exit_code == 2

    shown = ok(cascade.as_admin("cascade", "show", cascade_id, "--org", org))
    header = details(shown)
    assert (header["id"], header["root"], header["operation"], header["status"]) == (
        cascade_id,
        "network/prod",
        "update",
        "succeeded",
    )
    assert header["root deployment"] == deployment_id
    assert [row[:4] for row in table_rows(shown, "WAVE")] == [
        ["0", "network/prod", "✓", "succeeded"],
        ["1", "cluster/prod", "✓", "succeeded"],
        ["database/prod", "✓", "succeeded", "1"],
        ["2", "app/prod", "✓", "succeeded"],
    ]
    body = json.loads(ok(cascade.as_admin("cascade", "show", cascade_id, "--org", org, "--json")).stdout)
    assert body == api.get(f"/api/orgs/{org}/cascades/{cascade_id}").json()


def test_deploy_follow_on_a_terminal_draws_the_cascade_as_a_live_tree(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # Rich treats stdout as a terminal
    monkeypatch.setenv("COLUMNS", "160")
    stacks(api, org, ["network", "app"], repo_running(tmp_path))
    edge(api, org, "network", "app")
    result = ok(cascade.as_admin("deploy", f"{org}/network/prod", "--follow", "--timeout", FOLLOW_TIMEOUT))
    assert "\x1b[?25l" in result.stdout  # drawn as a live display
    screen = ANSI.sub("", result.stdout)
    cascade_id = re.search(r"Following cascade (\S+)", screen)
    assert cascade_id is not None, screen
    final = screen.rsplit(f"cascade {cascade_id.group(1)} (update of network/prod): succeeded", 1)[1]
    tree = [line.strip("│├└─ ") for line in final.splitlines() if line.strip()]
    assert tree[:4] == [
        "wave 0 (root)",
        "✓ network/prod  succeeded  v1",
        "wave 1",
        "✓ app/prod      succeeded  v1",
    ]
    assert screen.splitlines()[-1] == f"cascade {cascade_id.group(1)} succeeded: 2 succeeded"


def test_a_failed_member_is_shown_retried_and_followed_through_the_cli(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    update = f'if [ "$CASCADE_PROJECT" = database ] && [ ! -f {fixed} ]; then echo broken; exit 3; fi\necho ok'
    diamond(api, org, repo_running(tmp_path, update))
    result = cascade.as_admin("deploy", f"{org}/network/prod", "--follow", "--timeout", FOLLOW_TIMEOUT)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    cascade_id = re.search(r"Following cascade (\S+)", result.stdout)
    assert cascade_id is not None
    cid = cascade_id.group(1)
    finished = api.get(f"/api/orgs/{org}/cascades/{cid}").json()
    assert finished["status"] == "failed"
    lines = result.stdout.splitlines()
    assert f"[cascade] database/prod failed (version 1): {member(finished, 'database/prod')['reason']}" in lines
    assert "[cascade] app/prod skipped: upstream database/prod failed" in lines
    assert lines[-1] == f"cascade {cid} failed: 2 succeeded, 1 failed, 1 skipped"

    shown = ok(cascade.as_admin("cascade", "show", cid, "--org", org))
    app_row = next(line for line in shown.stdout.splitlines() if "app/prod" in line)
    assert app_row.split()[:4] == ["2", "app/prod", "-", "skipped"]
    assert app_row.rstrip().endswith("upstream database/prod failed")
    with_edges = ok(cascade.as_admin("cascade", "show", cid, "--org", org, "--edges"))
    assert with_edges.stdout.startswith(shown.stdout.rstrip("\n"))  # the same view, the edges after it
    assert [row[:3] for row in table_rows(with_edges, "UPSTREAM")] == [
        ["cluster/prod", "app/prod", "yes"],
        ["database/prod", "app/prod", "no"],
        ["network/prod", "cluster/prod", "yes"],
        ["network/prod", "database/prod", "yes"],
    ]
    assert table_rows(with_edges, "UPSTREAM")[1][3:] == ["database/prod", "failed"]
    failed(cascade.as_admin("cascade", "show", cid, "--org", org, "--edges", "--follow"), "--edges", "--follow")

    fixed.touch()
    retried = ok(cascade.as_admin("cascade", "retry", cid, "database/prod", "--org", org))
    assert re.match(rf"Retrying database/prod in cascade {cid}: now (queued|running) \(version 2\)\n", retried.stdout)
    assert "Waiting for it: app/prod\n" in retried.stdout
    followed = ok(cascade.as_admin("cascade", "show", cid, "--org", org, "--follow", "--timeout", FOLLOW_TIMEOUT))
    assert "[cascade] database/prod succeeded (version 2)" in followed.stdout.splitlines()
    assert followed.stdout.splitlines()[-1] == f"cascade {cid} succeeded: 4 succeeded"

    failed(
        cascade.as_admin("cascade", "retry", cid, f"{org}/app/prod"),  # a full reference names the org itself
        "error: app/prod has already succeeded: only a failed member can be retried (409)",
    )


def test_approve_and_reject_a_gated_member_through_the_cli(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path
) -> None:
    stacks(api, org, ["network", "app"], repo_running(tmp_path))
    edge(api, org, "network", "app", requireApproval=True)

    first = cascade_of_deploy(api, org)
    wait_cascade(api, org, first, lambda c: member(c, "app/prod")["status"] == "awaiting-approval")
    waiting = ok(cascade.as_admin("cascade", "show", first, "--org", org))
    app_row = next(line for line in waiting.stdout.splitlines() if "app/prod" in line)
    assert app_row.split()[:4] == ["1", "app/prod", "?", "awaiting-approval"]
    assert app_row.rstrip().endswith("the edge from network/prod requires approval")
    approved = ok(cascade.as_admin("cascade", "approve", first, "app/prod", "--org", org))
    assert re.fullmatch(rf"Approved app/prod in cascade {first}: now (queued|running).*\n", approved.stdout)
    done = wait_cascade(api, org, first, ended)
    assert done["status"] == "succeeded"
    approver = member(done, "app/prod")["approvedBy"]
    assert approver
    shown = ok(cascade.as_admin("cascade", "show", first, "--org", org))
    assert f"approved by {approver}" in shown.stdout
    failed(
        cascade.as_admin("cascade", "approve", first, "app/prod", "--org", org),
        "error: app/prod has already succeeded: only a member awaiting approval can be approved or rejected (409)",
    )

    second = cascade_of_deploy(api, org)
    wait_cascade(api, org, second, lambda c: member(c, "app/prod")["status"] == "awaiting-approval")
    rejected = json.loads(ok(cascade.as_admin("cascade", "reject", second, f"{org}/app/prod", "--json")).stdout)
    assert (member(rejected, "app/prod")["status"], member(rejected, "app/prod")["reason"]) == (
        "skipped",
        f"rejected by {approver}",
    )
    assert wait_cascade(api, org, second, ended)["status"] == "succeeded"  # a rejection is a skip, not a failure
    failed(
        cascade.as_admin("cascade", "reject", second, "app/prod", "--org", org),
        "error: app/prod has already been skipped: only a member awaiting approval can be approved or rejected (409)",
    )
    assert [row[:4] for row in table_rows(ok(cascade.as_admin("cascade", "show", second, "--org", org)), "WAVE")] == [
        ["0", "network/prod", "✓", "succeeded"],
        ["1", "app/prod", "-", "skipped"],
    ]


# -- notify ----------------------------------------------------------------------------------------------------


def test_notify_records_an_external_update_and_starts_a_cascade(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path
) -> None:
    stacks(api, org, ["network", "app"], repo_running(tmp_path))
    edge(api, org, "network", "app")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"vpcId": "vpc-123", "token": {"secret": "s3cr3t"}}))

    result = ok(
        cascade.as_admin(
            "notify", "network/prod", "--org", org, "--kind", "update_succeeded", "--outputs", str(outputs),
            "--resource-changes", '{"create": 2, "same": 5}',
        )
    )  # fmt: skip
    started = re.fullmatch(
        rf"Recorded update_succeeded of {org}/network/prod; outputs changed; started cascade (\S+)\n"
        rf"Follow it with: cascade cascade show \1 --org {org} --follow\n",
        result.stdout,
    )
    assert started is not None, result.stdout
    done = wait_cascade(api, org, started.group(1), ended)
    assert done["status"] == "succeeded" and done["rootDeploymentId"] is None
    assert [(m["stack"], m["status"], m["version"]) for m in done["members"]] == [
        ("network/prod", "succeeded", None),  # the root ran elsewhere
        ("app/prod", "succeeded", 1),
    ]
    shown = details(ok(cascade.as_admin("cascade", "show", started.group(1), "--org", org)))
    assert shown["root deployment"] == "none (an external update event)"

    again = json.loads(
        ok(
            cascade.as_admin(
                "notify", f"{org}/network/prod", "--kind", "update_succeeded", "--outputs", "-", "--json",
                input=outputs.read_text(),
            )
        ).stdout
    )  # fmt: skip
    assert again["kind"] == "update_succeeded" and again["outputsChanged"] is False and again["cascadeId"]
    wait_cascade(api, org, again["cascadeId"], ended)

    preview = ok(cascade.as_admin("notify", f"{org}/network/prod", "--kind", "preview_succeeded"))
    assert preview.stdout == f"Recorded preview_succeeded of {org}/network/prod; no cascade started\n"


def test_notify_errors_are_one_clean_line(cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path) -> None:
    stacks(api, org, ["network"])
    ref = f"{org}/network/prod"
    outputs = tmp_path / "outputs.json"
    outputs.write_text('{"a": 1}')
    failed(
        cascade.as_admin("notify", ref, "--kind", "update_failed", "--outputs", str(outputs)),
        "error: outputs are recorded only with kind update_succeeded (400)",
    )
    outputs.write_text("[1, 2]")
    failed(cascade.as_admin("notify", ref, "--kind", "update_succeeded", "--outputs", str(outputs)), "JSON object")
    outputs.write_text("{not json")
    failed(cascade.as_admin("notify", ref, "--kind", "update_succeeded", "--outputs", str(outputs)), "not valid JSON")
    failed(
        cascade.as_admin("notify", ref, "--kind", "update_succeeded", "--outputs", str(tmp_path / "missing.json")),
        "cannot read --outputs",
    )
    failed(
        cascade.as_admin("notify", ref, "--kind", "update_succeeded", "--resource-changes", '{"create": -1}'),
        "resourceChanges must map operation names to counts",
        "(400)",
    )
    failed(cascade.as_admin("notify", ref, "--kind", "update_succeeded", "--resource-changes", "2"), "JSON object")
    failed(cascade.as_admin("notify", f"{org}/nope/prod", "--kind", "update_succeeded"), "not found (404)")
    usage = cascade.as_admin("notify", ref, "--kind", "update_done")
    assert usage.exit_code == 2 and "update_succeeded" in usage.output  # the choices are listed


def test_notify_keeps_the_outputs_named_by_secret_as_secrets(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path
) -> None:
    stacks(api, org, ["network"])
    ref = f"{org}/network/prod"
    shown = tmp_path / "out.json"  # as `pulumi stack output --json --show-secrets` prints them
    shown.write_text(json.dumps({"vpcId": "vpc-1", "dbPassword": "hunter2-db", "apiKey": {"secret": "hunter2-key"}}))
    ok(cascade.as_admin("notify", ref, "--kind", "update_succeeded", "--outputs", str(shown), "--secret", "dbPassword"))
    viewer = ok(cascade.as_admin("token", "create", "--org", org, "--role", "viewer")).stdout.strip()
    with httpx2.Client(base_url=cascade.server.url, headers={"Authorization": f"token {viewer}"}) as reader:
        read = reader.get(f"/api/stacks/{ref}/outputs").json()
    assert read == {
        "outputs": {"vpcId": "vpc-1", "dbPassword": "[secret]", "apiKey": "[secret]"},
        "secretOutputs": ["apiKey", "dbPassword"],
    }
    revealed = api.get(f"/api/stacks/{ref}/outputs", params={"showSecrets": "true"}).json()["outputs"]
    assert revealed == {"vpcId": "vpc-1", "dbPassword": "hunter2-db", "apiKey": "hunter2-key"}

    # the masked listing marks what Pulumi prints as "[secret]" without --show-secrets
    shown.write_text(json.dumps({"vpcId": "vpc-2", "dbPassword": "hunter2-db2", "literal": "[secret]"}))
    masked = tmp_path / "masked.json"
    masked.write_text(json.dumps({"vpcId": "vpc-2", "dbPassword": "[secret]", "literal": "[secret]"}))
    notified = cascade.as_admin(
        "notify", ref, "--kind", "update_succeeded", "--outputs", "-", "--masked-outputs", str(masked),
        input=shown.read_text(),
    )  # fmt: skip
    ok(notified)
    assert "hunter2" not in notified.output
    read = api.get(f"/api/stacks/{ref}/outputs").json()
    assert read["secretOutputs"] == ["dbPassword"] and "hunter2" not in json.dumps(read)


def test_notify_names_an_output_json_cannot_carry(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path
) -> None:
    stacks(api, org, ["network"])
    ref = f"{org}/network/prod"
    shown = tmp_path / "out.json"
    shown.write_text('{"vpcId": "vpc-1", "ratio": NaN}')  # Python's JSON reader takes NaN; JSON has none
    failed(
        cascade.as_admin("notify", ref, "--kind", "update_succeeded", "--outputs", str(shown)),
        "cannot send this: outputs.ratio is NaN or infinite",
    )
    failed(
        cascade.as_admin("notify", ref, "--kind", "update_succeeded", "--resource-changes", '{"create": Infinity}'),
        "resourceChanges.create is NaN or infinite",
    )
    assert api.get(f"/api/stacks/{ref}/outputs").json()["outputs"] in ({}, None), "nothing was recorded"


def test_notify_refuses_secret_names_it_cannot_mark(
    cascade: Cascade, api: httpx2.Client, org: str, tmp_path: Path
) -> None:
    stacks(api, org, ["network"])
    ref = f"{org}/network/prod"
    shown = tmp_path / "out.json"
    shown.write_text(json.dumps({"dbPassword": "hunter2-db"}))
    masked = tmp_path / "masked.json"
    masked.write_text(json.dumps({"dbPassword": "[secret]", "gone": "[secret]"}))
    for args, message in [
        (["--outputs", str(shown), "--secret", "dbPasword"], "--outputs has no output named dbPasword"),
        (["--outputs", str(shown), "--masked-outputs", str(masked)], "--outputs has no output named gone"),
        (["--secret", "dbPassword"], "it marks outputs of --outputs, which is not given"),
        (["--outputs", "-", "--masked-outputs", "-"], "--outputs already reads stdin"),
    ]:
        usage = cascade.as_admin("notify", ref, "--kind", "update_succeeded", *args, input="{}")
        said = " ".join(usage.output.replace("│", " ").split())  # as rich wraps it in a box
        assert usage.exit_code == 2 and message in said, usage.output
        assert "hunter2" not in usage.output
    assert api.get(f"/api/stacks/{ref}/outputs").json()["outputs"] == {}  # nothing was sent
    helped = " ".join(ok(cascade.run("notify", "--help")).stdout.replace("│", " ").split())
    assert "--show-secrets > out.json" in helped and "--secret dbPassword" in helped
    assert 'every output it prints as "[secret]" is kept as a secret' in helped


# -- plan and graph --------------------------------------------------------------------------------------------


def test_plan_shows_the_waves_a_change_would_set_off(cascade: Cascade, api: httpx2.Client, org: str) -> None:
    diamond(api, org, network_database={"triggerOn": "outputs-changed"}, cluster_app={"requireApproval": True})
    shown = ok(cascade.as_admin("plan", f"{org}/network/prod"))
    lines = [line.strip("│├└─ ") for line in shown.stdout.splitlines()]
    assert lines == [
        f"An update of {org}/network/prod would deploy 3 stacks in 2 waves:",
        "wave 1",
        "cluster/prod  after network/prod",
        "database/prod  after network/prod  [if outputs of network/prod changed]",
        "wave 2",
        "app/prod  after cluster/prod, database/prod  [approval required (edge from cluster/prod)]",
    ]
    as_json = json.loads(ok(cascade.as_admin("plan", f"{org}/network/prod", "--json")).stdout)
    assert as_json == api.get(f"/api/stacks/{org}/network/prod/plan").json()
    assert as_json["waves"] == [["network/prod"], ["cluster/prod", "database/prod"], ["app/prod"]]

    middle = ok(cascade.as_admin("plan", "database/prod", "--org", org))
    assert middle.stdout.splitlines()[0] == f"An update of {org}/database/prod would deploy 1 stack in 1 wave:"
    assert ok(cascade.as_admin("plan", f"{org}/app/prod")).stdout == (
        f"Nothing would cascade from an update of {org}/app/prod.\n"
    )
    assert ok(cascade.as_admin("plan", f"{org}/network/prod", "-o", "preview")).stdout == (
        f"Nothing would cascade from a preview of {org}/network/prod.\n"
    )
    nothing = json.loads(ok(cascade.as_admin("plan", f"{org}/app/prod", "--json")).stdout)
    assert nothing == {"root": None, "operation": "update", "members": [], "waves": [], "edges": []}
    failed(cascade.as_admin("plan", f"{org}/nope/prod"), f"error: stack {org}/nope/prod not found (404)")


def test_graph_in_every_format(cascade: Cascade, api: httpx2.Client, org: str, pool_server: LiveServer) -> None:
    diamond(
        api,
        org,
        network_database={"triggerOn": "outputs-changed"},
        cluster_app={"requireApproval": True},
        database_app={"filters": ["deployment_failed"]},
    )
    stacks(api, org, ["tools"])
    with ApiClient(pool_server.url, pool_server.admin_token) as client:  # the stack's own approval gate
        assert client.update_cascade_settings(StackRef(org, "app", "prod"), require_approval=True) == {
            "requireApproval": True
        }
        assert client.get_cascade_settings(StackRef(org, "app", "prod")) == {"requireApproval": True}

    text = ok(cascade.as_admin("graph", "--org", org)).stdout.splitlines()
    assert text == [
        f"Deployment graph of {org}: 5 stacks, 4 edges",
        "layer 0",
        "  network/prod   (never deployed)",
        "    -> cluster/prod",
        "    -> database/prod  [if outputs changed]",
        "layer 1",
        "  cluster/prod   (never deployed)",
        "    -> app/prod  [approval required]",
        "  database/prod  (never deployed)",
        "    -> app/prod  [on deployment_failed]",
        "layer 2",
        "  app/prod       (never deployed, approval required)",
        "not connected",
        "  tools/prod     (never deployed)",
    ]

    mermaid = ok(cascade.as_admin("graph", "--org", org, "--format", "mermaid")).stdout.splitlines()
    assert mermaid[0] == "flowchart TD"
    ids = {m.group(2): m.group(1) for m in (re.match(r'\s+(n\d+)(?:\[|\{\{)"([^"]+)"', line) for line in mermaid) if m}
    assert set(ids) == {"app/prod", "cluster/prod", "database/prod", "network/prod", "tools/prod"}
    assert f'    {ids["app/prod"]}{{{{"app/prod"}}}}' in mermaid  # a hexagon: the stack needs approval
    assert f'    {ids["network/prod"]} -->|"outputs changed"| {ids["database/prod"]}' in mermaid
    assert f'    {ids["cluster/prod"]} -->|"approval required"| {ids["app/prod"]}' in mermaid
    assert f'    {ids["database/prod"]} -->|"on deployment_failed"| {ids["app/prod"]}' in mermaid
    assert f"    {ids['network/prod']} --> {ids['cluster/prod']}" in mermaid

    dot = ok(cascade.as_admin("graph", "--org", org, "--format", "dot")).stdout.splitlines()
    assert dot[0] == f'digraph "{org}" {{' and dot[-1] == "}"
    assert '  "app/prod" [peripheries=2];' in dot
    assert '  "network/prod" -> "database/prod" [label="outputs changed", style=dashed];' in dot
    assert '  "cluster/prod" -> "app/prod" [label="approval required"];' in dot
    assert '  "database/prod" -> "app/prod" [label="on deployment_failed"];' in dot
    assert '  "network/prod" -> "cluster/prod";' in dot

    body = api.get(f"/api/orgs/{org}/graph").json()
    assert json.loads(ok(cascade.as_admin("graph", "--org", org, "--format", "json")).stdout) == body
    assert json.loads(ok(cascade.as_admin("graph", "--org", org, "--json")).stdout) == body
    failed(cascade.as_admin("graph", "--org", org, "--json", "--format", "dot"), "give --json or --format dot")


# -- errors ----------------------------------------------------------------------------------------------------


def test_show_refuses_a_timeout_without_follow(cascade: Cascade, org: str) -> None:
    result = cascade.as_admin("cascade", "show", "c1", "--org", org, "--timeout", "5")
    assert result.exit_code == 2, result.output
    assert "'--timeout': it needs --follow" in " ".join(result.output.replace("│", " ").split()), result.output


def test_errors_are_the_servers_message_on_one_line(cascade: Cascade, api: httpx2.Client, org: str) -> None:
    failed(cascade.as_admin("cascade", "ls"), "no organization", "--org")
    failed(cascade.as_admin("graph"), "no organization")
    failed(
        cascade.as_admin("cascade", "show", "nope", "--org", org), f"cascade nope not found in organization {org} (404)"
    )
    failed(
        cascade.as_admin("cascade", "approve", "nope", "app/prod", "--org", org),
        f"cascade nope not found in organization {org} (404)",
    )
    failed(cascade.as_admin("cascade", "approve", "nope", "app/prod"), "stack 'app/prod' has no organization")
    failed(cascade.as_admin("cascade", "retry", "nope", "a/b/c/d"), "invalid stack 'a/b/c/d'")
    failed(cascade.as_admin("cascade", "show", "nope", "--org", org, "--follow", "--json"), "--follow")
    stacks(api, org, ["network", "app"])
    edge(api, org, "network", "app")
    started = api.post(f"/api/stacks/{org}/network/prod/events", json={"kind": "update_succeeded"}).json()
    failed(
        cascade.as_admin("cascade", "reject", started["cascadeId"], "other/prod", "--org", org),
        f"other/prod is not a member of cascade {started['cascadeId']} (404)",
    )
    wait_cascade(api, org, started["cascadeId"], ended)  # app/prod has no settings: it fails at once
    failed(cascade.as_token("not-a-token", "cascade", "ls", "--org", org), "(401)", "cascade login")
    assert cascade.as_admin("cascade", "ls", "--org", org, "--limit", "101").exit_code == 2


# -- the renderers, without a server ---------------------------------------------------------------------------

GRAPH: dict[str, Any] = {
    "nodes": [
        {"stack": "a/prod", "lastStatus": "succeeded", "paused": False, "requireApproval": False},
        {"stack": "b/prod", "lastStatus": "failed", "paused": True, "requireApproval": False},
        {"stack": "c/prod", "lastStatus": None, "paused": False, "requireApproval": True},
    ],
    "edges": [
        {"upstream": "a/prod", "downstream": "b/prod", "filters": ["update_succeeded"], "groups": [],
         "triggerOn": "always", "requireApproval": False},
        {"upstream": "b/prod", "downstream": "c/prod", "filters": [], "groups": ["stacks"],
         "triggerOn": "outputs-changed", "requireApproval": True},
        {"upstream": "a/prod", "downstream": "c/prod", "filters": [], "groups": [],
         "triggerOn": "always", "requireApproval": False},
    ],
}  # fmt: skip


def test_layers_put_a_stack_one_below_its_latest_upstream() -> None:
    assert layers(GRAPH) == [["a/prod"], ["b/prod"], ["c/prod"]]
    assert layers({"nodes": [], "edges": []}) == []
    cyclic = {"edges": [{"upstream": "x/p", "downstream": "y/p"}, {"upstream": "y/p", "downstream": "x/p"}]}
    with pytest.raises(GraphCycle) as caught:
        layers(cyclic)
    assert set(caught.value.cycle) == {"x/p", "y/p"}


def test_render_text_shows_states_and_the_special_edges() -> None:
    assert render_text(GRAPH, org="acme").splitlines() == [
        "Deployment graph of acme: 3 stacks, 3 edges",
        "layer 0",
        "  a/prod  (succeeded)",
        "    -> b/prod",
        "    -> c/prod  [on every event]",
        "layer 1",
        "  b/prod  (failed, paused)",
        "    -> c/prod  [on stacks (group); if outputs changed; approval required]",
        "layer 2",
        "  c/prod  (never deployed, approval required)",
    ]
    assert render_text({"nodes": [], "edges": []}).splitlines() == [
        "Deployment graph: 0 stacks, 0 edges",
        "No deployment edges.",
    ]


def test_render_mermaid_and_dot_of_the_same_graph() -> None:
    assert render_mermaid(GRAPH).splitlines() == [
        "flowchart TD",
        '    n0["a/prod"]',
        '    n1["b/prod"]',
        '    n2{{"c/prod"}}',
        "    n0 --> n1",
        '    n0 -->|"on every event"| n2',
        '    n1 -->|"on stacks (group); outputs changed; approval required"| n2',
        "    classDef succeeded fill:#e6f4ea,stroke:#1e8e3e",
        "    class n0 succeeded",
        "    classDef failed fill:#fce8e6,stroke:#d93025",
        "    class n1 failed",
    ]
    assert render_dot(GRAPH, org="acme").splitlines() == [
        'digraph "acme" {',
        "  rankdir=TB;",
        "  node [shape=box];",
        '  "a/prod" [style=filled, fillcolor="#e6f4ea", color="#1e8e3e"];',
        '  "b/prod" [style=filled, fillcolor="#fce8e6", color="#d93025"];',
        '  "c/prod" [peripheries=2];',
        '  "a/prod" -> "b/prod";',
        '  "a/prod" -> "c/prod" [label="on every event"];',
        '  "b/prod" -> "c/prod" [label="on stacks (group); outputs changed; approval required", style=dashed];',
        "}",
    ]


def test_names_are_quoted_so_they_can_never_become_syntax() -> None:
    nasty = 'x"];\n  evil --> y["#<b>&'
    assert mermaid_text(nasty) == "x#quot;];   evil --#gt; y[#quot;#35;#lt;b#gt;#amp;"
    assert dot_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    edge = {"upstream": nasty, "downstream": 'q"/p', "filters": ["update_succeeded"], "groups": []}
    graph = {"nodes": [{"stack": nasty}], "edges": [edge]}
    mermaid = render_mermaid(graph).splitlines()
    assert mermaid[1:] == ['    n0["q#quot;/p"]', f'    n1["{mermaid_text(nasty)}"]', "    n1 --> n0"]
    dot = render_dot(graph, org='o"rg').splitlines()
    assert len(dot) == 7  # the newline in the name did not break a line
    assert dot[0] == 'digraph "o\\"rg" {'
    assert dot[-2] == f'  {dot_string(nasty)} -> "q\\"/p";'


def test_diagrams_label_the_events_an_edge_listens_to_quoted_for_their_format() -> None:
    graph = {
        "edges": [
            {"upstream": "a/p", "downstream": "b/p", "filters": ["deployment_failed"], "groups": []},
            {"upstream": "a/p", "downstream": "c/p", "filters": ["update_succeeded"], "groups": []},
            {"upstream": "b/p", "downstream": "c/p", "filters": ['x"];#<y>\\'], "groups": ["stacks"],
             "requireApproval": True},
        ]
    }  # fmt: skip
    assert render_mermaid(graph).splitlines()[4:] == [
        '    n0 -->|"on deployment_failed"| n1',
        "    n0 --> n2",
        '    n1 -->|"on stacks (group), x#quot;];#35;#lt;y#gt;\\; approval required"| n2',
    ]
    assert render_dot(graph).splitlines()[3:] == [
        '  "a/p";',
        '  "b/p";',
        '  "c/p";',
        '  "a/p" -> "b/p" [label="on deployment_failed"];',
        '  "a/p" -> "c/p";',
        '  "b/p" -> "c/p" [label="on stacks (group), x\\"];#<y>\\\\; approval required"];',
        "}",
    ]


CASCADE: dict[str, Any] = {
    "id": "c1",
    "root": "net/prod",
    "operation": "update",
    "status": "running",
    "members": [
        {"stack": "net/prod", "wave": 0, "status": "succeeded", "version": 4, "reason": None, "approvedBy": None,
         "started": "2030-01-01T00:00:00Z", "finished": "2030-01-01T00:00:05Z"},
        {"stack": "db/prod", "wave": 1, "status": "queued", "version": 2, "reason": None, "approvedBy": None,
         "started": "2030-01-01T00:00:06Z", "finished": None},
        {"stack": "k8s/prod", "wave": 1, "status": "awaiting-approval", "version": None,
         "reason": "k8s/prod requires approval", "approvedBy": None, "started": None, "finished": None},
        {"stack": "app/prod", "wave": 2, "status": "waiting", "version": None, "reason": None, "approvedBy": None,
         "started": None, "finished": None},
    ],
}  # fmt: skip


def rendered(renderable: object) -> list[str]:
    out = Console(width=120, record=True, color_system=None, force_terminal=False)
    out.print(renderable)
    return [line.rstrip() for line in out.export_text().splitlines()]


def test_a_cascade_as_a_tree_and_as_a_table() -> None:
    assert rendered(follow.cascade_tree(CASCADE)) == [
        "cascade c1 (update of net/prod): running",
        "├── wave 0 (root)",
        "│   └── ✓ net/prod  succeeded          v4",
        "├── wave 1",
        "│   ├── ▸ db/prod   running            v2",  # queued, and its deployment has started
        "│   └── ? k8s/prod  awaiting-approval       k8s/prod requires approval",
        "└── wave 2",
        "    └── · app/prod  waiting",
    ]
    table = rendered(follow.cascade_table(CASCADE))
    assert table[0].split() == ["WAVE", "STACK", "STATUS", "VERSION", "DURATION", "NOTE"]
    assert [line.split()[:5] for line in table[2:]] == [
        ["0", "net/prod", "✓", "succeeded", "4"],
        ["1", "db/prod", "▸", "running", "2"],
        ["k8s/prod", "?", "awaiting-approval", "k8s/prod", "requires"],
        ["2", "app/prod", "·", "waiting"],
    ]
    assert table[2].split()[5] == "5.0s"
    assert (
        follow.cascade_summary(CASCADE) == "cascade c1 running: 1 succeeded, 1 awaiting-approval, 1 running, 1 waiting"
    )


def test_show_times_a_running_member_on_the_servers_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's clock is in 2030 here; this machine's is not: db/prod started at 00:00:06 on the server."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=CASCADE, headers={"Date": "Tue, 01 Jan 2030 00:00:09 GMT"})

    connection = SimpleNamespace(
        client=lambda: ApiClient("http://cascade.test", "t", transport=httpx2.MockTransport(handler))
    )
    monkeypatch.setattr(cascades_cli, "connect_to_org", lambda server, token, org: (connection, "acme"))
    shown = ok(CliRunner().invoke(app, ["cascade", "show", "c1"]))
    [running] = [line.split() for line in shown.stdout.splitlines() if "db/prod" in line]
    took = float(running[running.index("2") + 1].removesuffix("s"))
    assert 3.0 <= took < 10.0  # 00:00:09 (at least) less 00:00:06; never years, nor negative


def test_a_running_members_duration_is_counted_to_the_time_given() -> None:
    at_nine = datetime(2030, 1, 1, 0, 0, 9, tzinfo=UTC)
    assert follow.member_took(CASCADE["members"][1], now=at_nine) == "3.0s"
    assert follow.member_took(CASCADE["members"][0], now=at_nine) == "5.0s"  # finished: the server's own times
    table = rendered(follow.cascade_table(CASCADE, now=at_nine))
    assert table[3].split()[:5] == ["1", "db/prod", "▸", "running", "2"] and table[3].split()[5] == "3.0s"


# -- following a cascade, bounded ------------------------------------------------------------------------------


def scripted(*bodies: dict[str, Any]) -> tuple[ApiClient, list[str]]:
    """A client answering each cascade read with the next body (the last one for ever); the paths it was asked."""
    pending = list(bodies)
    asked: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        asked.append(request.url.path)
        body = pending.pop(0) if len(pending) > 1 else pending[0]
        return httpx2.Response(200, json=body)

    return ApiClient("http://cascade.test", "token", transport=httpx2.MockTransport(handler)), asked


def state(status: str, **members: str) -> dict[str, Any]:
    return {
        "id": "c1",
        "status": status,
        "members": [{"stack": stack, "wave": 0, "status": s} for stack, s in members.items()],
    }


def test_following_prints_a_line_per_change_and_waits_longer_while_nothing_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(follow, "time", SimpleNamespace(monotonic=time.monotonic, sleep=waits.append))
    running = state("running", **{"a/p": "queued", "b/p": "waiting"})
    api, asked = scripted(
        running, running, running, running, running, state("running", **{"a/p": "succeeded", "b/p": "waiting"}),
        state("running", **{"a/p": "succeeded", "b/p": "queued"}), state("succeeded", **{"a/p": "succeeded", "b/p": "succeeded"}),
    )  # fmt: skip
    printed: list[str] = []
    with api:
        end = follow.follow_cascade_plain(
            api, "acme", "c1", emit=printed.append, deadline=follow.Deadline(None), poll_seconds=0.5, max_poll_seconds=3
        )
    assert end["status"] == "succeeded"
    assert printed == [
        "[cascade] a/p queued",
        "[cascade] b/p waiting",
        "[cascade] a/p succeeded",
        "[cascade] b/p queued",
        "[cascade] b/p succeeded",
    ]
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0, 0.5, 0.5]  # doubling up to the cap, back down after a change
    assert set(asked) == {"/api/orgs/acme/cascades/c1"}


def test_following_says_how_to_approve_a_member_that_awaits_approval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow, "time", SimpleNamespace(monotonic=time.monotonic, sleep=lambda seconds: None))
    gated = state("running", **{"a/p": "awaiting-approval"}) | {"organization": "acme"}
    api, _ = scripted(gated, state("succeeded", **{"a/p": "succeeded"}))
    printed: list[str] = []
    with api:
        follow.follow_cascade_plain(api, "acme", "c1", emit=printed.append, deadline=follow.Deadline(None))
    assert printed == [
        "[cascade] a/p awaiting-approval",
        "[cascade] awaiting approval: a/p; let it run with `cascade cascade approve c1 a/p --org acme` "
        "(or skip it with reject)",
        "[cascade] a/p succeeded",
    ]
    live = rendered(
        follow._CascadeView(
            gated | {"members": [*gated["members"], {"stack": "b/p", "wave": 0, "status": "awaiting-approval"}]}
        )
    )
    assert live[0] == (
        "awaiting approval: a/p, b/p; let it run with `cascade cascade approve c1 STACK --org acme` (or skip it with reject)"
    )  # first: below a tree taller than the terminal it would be cut off


def test_following_a_cascade_gives_up_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow, "time", SimpleNamespace(monotonic=time.monotonic, sleep=lambda seconds: None))
    api, _ = scripted(state("running", **{"a/p": "queued"}))
    deadline = follow.Deadline(1, start=time.monotonic() - 10)
    with api, pytest.raises(CliError) as raised:
        follow.follow_cascade_plain(api, "acme", "c1", emit=lambda line: None, deadline=deadline)
    assert raised.value.message == (
        "cascade c1 had not ended after 1 second; it goes on "
        "(follow it again with `cascade cascade show c1 --org acme --follow`)"
    )


def crowded(status: str = "running") -> dict[str, Any]:
    """A root and 40 downstream stacks: wave 1 with a member in each state among 20 that succeeded, wave 2 waiting."""
    wave_1 = ["succeeded"] * 12 + ["failed", "skipped", "skipped", "running", "queued"] + ["succeeded"] * 8
    wave_1 += ["awaiting-approval", "running", "skipped", "skipped", "queued"]
    members = [{"stack": "net/prod", "wave": 0, "status": "succeeded", "version": 1}]
    for number, state in enumerate(wave_1):
        started = "2030-01-01T00:00:00Z" if state == "running" else None
        members.append({"stack": f"s{number:02d}/prod", "wave": 1, "status": "queued" if started else state,
                        "started": started})  # fmt: skip
    members += [{"stack": f"w{number:02d}/prod", "wave": 2, "status": "waiting"} for number in range(10)]
    return {"id": "c1", "organization": "acme", "root": "net/prod", "operation": "update", "status": status,
            "members": members}  # fmt: skip


def live_frame(cascade: dict[str, Any], height: int) -> list[str]:
    """One frame of the live display on a terminal ``height`` rows high, as Live draws it (it cuts what is taller)."""
    out = Console(width=120, height=height, record=True, color_system=None, force_terminal=False)
    out.print(LiveRender(follow._CascadeView(cascade)))
    return [line.rstrip() for line in out.export_text().splitlines()]


HINT = "awaiting approval: s25/prod; let it run with `cascade cascade approve c1 s25/prod --org acme` (or skip it with reject)"


def test_a_live_tree_taller_than_the_terminal_keeps_what_needs_attention_in_sight() -> None:
    def shown(frame: list[str]) -> list[str]:  # without the guides; a spinner in any of its frames is ⠋
        return [re.sub("[\u2800-\u28ff]", "⠋", line.strip("│├└─ ")) for line in frame]

    assert len(live_frame(crowded(), 60)) == 1 + 1 + 2 + 1 + 30 + 1 + 10  # it fits: every member has its line

    frame = live_frame(crowded(), 24)
    assert len(frame) <= 24 and "..." not in frame[-1]  # Live had nothing to cut
    assert shown(frame) == [
        HINT,
        "cascade c1 (update of net/prod): running",
        "wave 0 (root): 1 succeeded",
        "wave 1",
        "✗ s12/prod  failed",
        "- s13/prod  skipped",
        "- s14/prod  skipped",
        "⠋ s15/prod  running",
        "⠋ s16/prod  queued",
        "? s25/prod  awaiting-approval",
        "⠋ s26/prod  running",
        "- s27/prod  skipped",
        "- s28/prod  skipped",
        "⠋ s29/prod  queued",
        "+ 20 succeeded",
        "wave 2: 10 waiting",
    ]

    frame = live_frame(crowded(), 15)  # still too tall: queued and skipped members are counted too
    assert len(frame) <= 15 and "..." not in frame[-1]
    assert shown(frame) == [
        HINT,
        "cascade c1 (update of net/prod): running",
        "wave 0 (root): 1 succeeded",
        "wave 1",
        "✗ s12/prod  failed",
        "⠋ s15/prod  running",
        "? s25/prod  awaiting-approval",
        "⠋ s26/prod  running",
        "+ 20 succeeded, 4 skipped, 2 queued",
        "wave 2: 10 waiting",
    ]

    assert shown(live_frame(crowded(), 8)) == [  # a tiny terminal: the approval and the failure, the rest counted
        HINT,
        "cascade c1 (update of net/prod): running",
        "wave 0 (root): 1 succeeded",
        "wave 1",
        "✗ s12/prod  failed",
        "? s25/prod  awaiting-approval",
        "+ 20 succeeded, 4 skipped, 2 running, 2 queued",
        "wave 2: 10 waiting",
    ]


def test_the_tree_of_an_ended_cascade_is_complete_whatever_the_terminal() -> None:
    ended = crowded("failed")
    out = Console(width=120, height=15, record=True, color_system=None, force_terminal=False)
    out.print(follow._CascadeView(ended))  # Live draws its last frame whole, however tall
    text = out.export_text()
    assert all(member["stack"] in text for member in ended["members"])
    assert "+ " not in text
