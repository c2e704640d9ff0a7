"""``cascade autodeploy show|diff|apply`` against a live server: our documents and Pulumi's programs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
import yaml

from stackcascade.cli import autodeploy as autodeploy_command
from tests.cli.cli_support import Cascade, failed, ok, rows
from tests.domain.test_autodeploy import LAYERED_PROGRAM, TREE_PROGRAM, WEBHOOKS_PROGRAM

DIAMOND = """\
stacks:
  - project: network
    stack: prod
    downstreamRefs: [database/prod, cluster/prod]
  - project: database
    stack: prod
    downstreamRefs: [app/prod]
  - project: cluster
    stack: prod
    downstreamRefs:
      - ref: app/prod
        triggerOn: outputs-changed
  - project: app
    stack: prod
    requireApproval: true
    downstreamRefs: []
"""


def make_stacks(cascade: Cascade, org: str, *names: str) -> None:
    for name in names:
        ok(cascade.as_admin("stack", "create", f"{org}/{name}"))


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def managed_edges(cascade: Cascade, org: str) -> list[tuple[str, str]]:
    with httpx2.Client(
        base_url=cascade.server.url, headers={"Authorization": f"token {cascade.server.admin_token}"}
    ) as api:
        graph = api.get(f"/api/orgs/{org}/graph").json()
    return sorted((edge["upstream"], edge["downstream"]) for edge in graph["edges"])


@pytest.fixture
def diamond(cascade: Cascade, org: str) -> str:
    make_stacks(cascade, org, "network/prod", "database/prod", "cluster/prod", "app/prod")
    return org


def test_diff_apply_show_of_a_document(cascade: Cascade, diamond: str, tmp_path: Path) -> None:
    org = diamond
    file = write(tmp_path, "graph.yaml", DIAMOND)
    planned = ok(cascade.as_admin("autodeploy", "diff", file, "--org", org))
    table = rows(planned)
    assert table[0] == ["CHANGE", "UPSTREAM", "DOWNSTREAM", "WEBHOOK", "DETAILS"]
    assert table[5][:4] == ["create", "network/prod", "database/prod", "autodeploy-database-prod"]
    assert table[6] == ["gate", "app/prod", "requireApproval:", "false", "->", "true"]
    assert planned.stdout.strip().endswith(
        "Plan: 4 to create, 0 to update, 0 to delete, 0 unchanged, 1 stack gate to change."
    )
    assert managed_edges(cascade, org) == []  # diff changes nothing

    applied = ok(cascade.as_admin("autodeploy", "apply", file, "--org", org, "--yes"))
    assert (
        f"Applied to organization {org}: 4 created, 0 updated, 0 deleted, 0 unchanged, 1 stack gate changed."
        in applied.stdout
    )
    assert managed_edges(cascade, org) == [
        ("cluster/prod", "app/prod"),
        ("database/prod", "app/prod"),
        ("network/prod", "cluster/prod"),
        ("network/prod", "database/prod"),
    ]
    same = ok(cascade.as_admin("autodeploy", "diff", file, "--org", org))
    assert (
        same.stdout.strip()
        == "No changes: the declaration matches (0 to create, 0 to update, 0 to delete, 4 unchanged)."
    )

    shown = ok(cascade.as_admin("autodeploy", "show", "--org", org))
    document = yaml.safe_load(shown.stdout)
    assert document["stacks"][1] == {
        "project": "cluster",
        "stack": "prod",
        "triggerOn": "outputs-changed",
        "requireApproval": False,
        "downstreamRefs": ["app/prod"],
    }
    # what show prints applies as no change
    again = ok(
        cascade.as_admin("autodeploy", "apply", write(tmp_path, "shown.yaml", shown.stdout), "--org", org, "--yes")
    )
    assert again.stdout.startswith("No changes")
    as_json = json.loads(ok(cascade.as_admin("autodeploy", "show", "--org", org, "--json")).stdout)
    assert as_json == document


def test_apply_asks_first_unless_yes(cascade: Cascade, diamond: str, tmp_path: Path) -> None:
    org = diamond
    file = write(tmp_path, "graph.json", json.dumps(yaml.safe_load(DIAMOND)))
    declined = cascade.as_admin("autodeploy", "apply", file, "--org", org, input="n\n")
    assert declined.exit_code == 1
    assert "not applied (pass --yes to apply without asking)" in declined.stderr
    assert "Plan: 4 to create" in declined.stdout
    assert managed_edges(cascade, org) == []
    accepted = ok(cascade.as_admin("autodeploy", "apply", file, "--org", org, input="y\n"))
    assert "Applied to organization" in accepted.stdout
    assert len(managed_edges(cascade, org)) == 4
    nothing = ok(cascade.as_admin("autodeploy", "apply", file, "--org", org))  # no question when nothing changes
    assert nothing.stdout.startswith("No changes")


def test_apply_applies_only_the_diff_it_showed(
    cascade: Cascade, diamond: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = diamond
    file = write(tmp_path, "graph.yaml", DIAMOND)
    other = write(tmp_path, "other.yaml", "stacks:\n  - {project: network, stack: prod, downstreamRefs: [app/prod]}\n")

    def someone_else_applies_while_asked(question: str) -> bool:
        ok(cascade.as_admin("autodeploy", "apply", other, "--org", org, "--yes"))
        return True

    monkeypatch.setattr(autodeploy_command, "_confirm", someone_else_applies_while_asked)
    refused = cascade.as_admin("autodeploy", "apply", file, "--org", org)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "Plan: 4 to create" in refused.stdout, "the diff shown, which is no longer what applying would do"
    assert refused.stderr.startswith("error: ") and "changed since the diff you saw" in refused.stderr
    assert managed_edges(cascade, org) == [("network/prod", "app/prod")]
    monkeypatch.setattr(autodeploy_command, "_confirm", lambda question: True)
    ok(cascade.as_admin("autodeploy", "apply", file, "--org", org))
    assert len(managed_edges(cascade, org)) == 4


def test_json_output(cascade: Cascade, diamond: str, tmp_path: Path) -> None:
    org = diamond
    file = write(tmp_path, "graph.yaml", DIAMOND)
    planned = json.loads(ok(cascade.as_admin("autodeploy", "diff", file, "--org", org, "--json")).stdout)
    assert planned["applied"] is False and planned["problems"] == [] and len(planned["diff"]["create"]) == 4
    applied = json.loads(ok(cascade.as_admin("autodeploy", "apply", file, "--org", org, "--yes", "--json")).stdout)
    assert applied["applied"] is True and applied["diff"] == planned["diff"]


def test_the_documentations_layered_program_applies_as_it_is(cascade: Cascade, diamond: str, tmp_path: Path) -> None:
    org = diamond
    file = write(tmp_path, "Pulumi.yaml", LAYERED_PROGRAM)
    ok(cascade.as_admin("autodeploy", "apply", file, "--org", org, "--yes"))
    assert managed_edges(cascade, org) == [
        ("cluster/prod", "app/prod"),
        ("database/prod", "app/prod"),
        ("network/prod", "cluster/prod"),
        ("network/prod", "database/prod"),
    ]
    assert ok(cascade.as_admin("autodeploy", "diff", file, "--org", org)).stdout.startswith("No changes")
    translated = yaml.safe_load(ok(cascade.as_admin("autodeploy", "show", file, "--org", org)).stdout)
    assert translated["stacks"][3] == {
        "project": "network",
        "stack": "prod",
        "downstreamRefs": ["cluster/prod", "database/prod"],
    }


def test_a_program_of_another_organization_is_refused_unless_mapped(cascade: Cascade, org: str, tmp_path: Path) -> None:
    make_stacks(cascade, org, *(f"dependency-example/{name}" for name in "abcdef"))
    file = write(tmp_path, "Pulumi.yaml", TREE_PROGRAM)
    result = cascade.as_admin("autodeploy", "apply", file, "--org", org, "--yes")
    assert result.exit_code == 1 and result.stdout == ""
    assert "has 1 thing stackcascade cannot honour" in result.stderr
    assert f"resources f, e, d, c, b, a: organization 'pulumi' is not '{org}'" in result.stderr
    assert (
        f"hint: the program declares stacks of organization 'pulumi': run with --org pulumi, or pass --program-org pulumi to declare them in {org}"
        in result.stderr
    )
    assert "error: nothing was applied" in result.stderr
    assert managed_edges(cascade, org) == []
    ok(cascade.as_admin("autodeploy", "apply", file, "--org", org, "--program-org", "pulumi", "--yes"))
    assert len(managed_edges(cascade, org)) == 5


def test_the_documentations_webhook_program(cascade: Cascade, org: str, tmp_path: Path) -> None:
    make_stacks(cascade, org, "network/prod", "database/prod", "compute/prod")
    file = write(tmp_path, "Pulumi.yaml", WEBHOOKS_PROGRAM)
    ok(cascade.as_admin("autodeploy", "apply", file, "--org", org, "--program-org", "org", "--yes"))
    assert managed_edges(cascade, org) == [("database/prod", "compute/prod"), ("network/prod", "database/prod")]
    hooks = json.loads(ok(cascade.as_admin("webhook", "ls", "--stack", f"{org}/network/prod", "--json")).stdout)
    assert [(h["name"], h["displayName"], h["filters"]) for h in hooks] == [
        ("autodeploy-database-prod", "deploy-database", ["update_succeeded"])
    ]


def test_problems_are_listed_and_diff_shows_the_rest(cascade: Cascade, diamond: str, tmp_path: Path) -> None:
    org = diamond
    text = LAYERED_PROGRAM + "  bucket:\n    type: aws:s3:Bucket\n"
    file = write(tmp_path, "Pulumi.yaml", text)
    result = cascade.as_admin("autodeploy", "diff", file, "--org", org)
    assert result.exit_code == 1
    assert "resources.bucket: resource type 'aws:s3:Bucket' is not supported" in result.stderr
    assert "apply would refuse it" in result.stderr
    assert "Plan: 4 to create" in result.stdout
    refused = cascade.as_admin("autodeploy", "apply", file, "--org", org, "--yes")
    assert refused.exit_code == 1 and "nothing was applied" in refused.stderr
    assert managed_edges(cascade, org) == []
    shown = cascade.as_admin("autodeploy", "show", file, "--org", org, "--json")
    assert shown.exit_code == 1
    assert json.loads(shown.stdout)["problems"] == [
        "resources.bucket: resource type 'aws:s3:Bucket' is not supported: only auto-deploy:AutoDeployer and "
        "pulumiservice:Webhook (format pulumi_deployments) are read; stackcascade creates nothing else"
    ]


def test_server_refusals_and_unreadable_files(cascade: Cascade, diamond: str, tmp_path: Path) -> None:
    org = diamond
    unknown = write(
        tmp_path, "unknown.yaml", "stacks:\n  - project: network\n    stack: prod\n    downstreamRefs: [ghost/prod]\n"
    )
    failed(cascade.as_admin("autodeploy", "apply", unknown, "--org", org, "--yes"), f"{org}/ghost/prod", "(400)")
    failed(
        cascade.as_admin("autodeploy", "diff", write(tmp_path, "bad.yaml", "stacks: [\n"), "--org", org),
        "is not valid YAML",
    )
    failed(
        cascade.as_admin("autodeploy", "diff", write(tmp_path, "dup.yaml", "stacks: []\nstacks: []\n"), "--org", org),
        "duplicate key 'stacks'",
    )
    failed(
        cascade.as_admin("autodeploy", "diff", write(tmp_path, "other.yaml", "hello: world\n"), "--org", org),
        "neither an Auto Deploy document",
    )
    failed(cascade.as_admin("autodeploy", "diff", str(tmp_path / "missing.yaml"), "--org", org), "cannot read")
    failed(
        cascade.as_admin(
            "autodeploy", "diff", write(tmp_path, "doc.yaml", "stacks: []\n"), "--org", org, "--program-org", "x"
        ),
        "--program-org is for Pulumi programs",
    )


def test_yaml_is_read_as_pulumi_reads_it(cascade: Cascade, org: str, tmp_path: Path) -> None:
    make_stacks(cascade, org, "on/yes", "off/no")
    text = "stacks:\n  - project: on\n    stack: yes\n    downstreamRefs: [off/no]\n"
    ok(cascade.as_admin("autodeploy", "apply", write(tmp_path, "g.yaml", text), "--org", org, "--yes"))
    assert managed_edges(cascade, org) == [("on/yes", "off/no")]


def layered_with(**sections: object) -> str:
    """The documentation's layered program with sections added (variables merged into its own), as YAML."""
    data = yaml.safe_load(LAYERED_PROGRAM)
    data["variables"] |= sections.pop("variables", {})
    return yaml.safe_dump(data | sections, sort_keys=False)


def test_what_a_program_cannot_evaluate_is_refused_even_where_nothing_uses_it(
    cascade: Cascade, diamond: str, tmp_path: Path
) -> None:
    org = diamond
    ok(cascade.as_admin("autodeploy", "apply", write(tmp_path, "Pulumi.yaml", LAYERED_PROGRAM), "--org", org, "--yes"))
    text = layered_with(
        outputs={"bogus": "${doesNotExist.ref}", "hooks": "${network.downstreamWebhooks}"},
        variables={"lookup": {"fn::invoke": {"function": "aws:getCallerIdentity"}}},
        config={"region": {"type": "string"}, "pulumiservice:accessToken": {"value": "pul-xyz-token"}},
    )
    file = write(tmp_path, "more.yaml", text)
    refused = cascade.as_admin("autodeploy", "apply", file, "--org", org, "--yes")
    assert refused.exit_code == 1 and refused.stdout == ""
    assert "has 3 things stackcascade cannot honour" in refused.stderr
    for where in ("outputs.bogus", "variables.lookup", "config.region"):
        assert f"  - {where}: " in refused.stderr
    assert "note: outputs.hooks: network.downstreamWebhooks are names Pulumi Cloud gives" in refused.stderr
    assert "note: config.pulumiservice:accessToken: configures the pulumiservice provider" in refused.stderr
    assert "pul-xyz-token" not in refused.output
    assert "error: nothing was applied" in refused.stderr
    planned = cascade.as_admin("autodeploy", "diff", file, "--org", org)
    assert planned.exit_code == 1 and "apply would refuse it" in planned.stderr


def test_notes_say_what_has_no_effect_and_do_not_stop_apply(cascade: Cascade, diamond: str, tmp_path: Path) -> None:
    org = diamond
    text = layered_with(
        outputs={"networkRef": "${network.ref}"}, config={"pulumiservice:accessToken": {"value": "pul-xyz-token"}}
    )
    file = write(tmp_path, "Pulumi.yaml", text)
    planned = json.loads(ok(cascade.as_admin("autodeploy", "diff", file, "--org", org, "--json")).stdout)
    assert planned["problems"] == [] and len(planned["notes"]) == 2
    applied = ok(cascade.as_admin("autodeploy", "apply", file, "--org", org, "--yes"))
    assert "Applied to organization" in applied.stdout and "note:" not in applied.stdout
    assert applied.stderr.splitlines() == [
        "note: config.pulumiservice:accessToken: configures the pulumiservice provider, which stackcascade does not "
        "use: the declaration is applied to the cascade server with your cascade token; this value is not read",
        "note: outputs: networkRef has no effect: a declaration applied here makes no stack to export it from",
    ]
    assert len(managed_edges(cascade, org)) == 4
    shown = json.loads(ok(cascade.as_admin("autodeploy", "show", file, "--org", org, "--json")).stdout)
    assert shown["notes"] == [line.removeprefix("note: ") for line in applied.stderr.splitlines()]


def test_json_is_read_as_json_from_stdin_or_a_file_of_any_name(cascade: Cascade, diamond: str, tmp_path: Path) -> None:
    org = diamond
    tabbed = json.dumps(yaml.safe_load(DIAMOND), indent="\t")  # as `jq --tab` writes it
    assert "Plan: 4 to create" in ok(cascade.as_admin("autodeploy", "diff", "-", "--org", org, input=tabbed)).stdout
    named = write(tmp_path, "graph", "\n  " + tabbed)
    assert "Plan: 4 to create" in ok(cascade.as_admin("autodeploy", "diff", named, "--org", org)).stdout
    # YAML that starts with a flow mapping is still YAML
    empty = ok(cascade.as_admin("autodeploy", "diff", "-", "--org", org, input="{stacks: []}\n"))
    assert empty.stdout.startswith("No changes")
    # a byte order mark (PowerShell's Out-File, Windows editors) does not hide the JSON
    marked = tmp_path / "graph-bom"
    marked.write_bytes("\ufeff".encode() + tabbed.encode())
    assert "Plan: 4 to create" in ok(cascade.as_admin("autodeploy", "diff", str(marked), "--org", org)).stdout
    assert (
        "Plan: 4 to create"
        in ok(cascade.as_admin("autodeploy", "diff", "-", "--org", org, input="\ufeff" + tabbed)).stdout
    )


def test_unreadable_json_or_yaml_is_one_line(cascade: Cascade, diamond: str, tmp_path: Path) -> None:
    org = diamond
    broken = json.dumps(yaml.safe_load(DIAMOND), indent="\t")[:-3]
    message = failed(
        cascade.as_admin("autodeploy", "diff", "-", "--org", org, input=broken),
        "stdin is not valid JSON (Expecting ',' delimiter: line",
        "nor YAML (found character '\\t' that cannot start any token",
    )
    assert message.count("\n") == 1
    twice = failed(
        cascade.as_admin("autodeploy", "diff", "-", "--org", org, input='{"stacks": [], "stacks": []}'),
        "stdin is not valid JSON: duplicate key 'stacks'",
    )
    assert twice.count("\n") == 1


def test_values_json_cannot_carry_are_named_not_crashed_on(cascade: Cascade, diamond: str, tmp_path: Path) -> None:
    org = diamond
    dated = DIAMOND.replace("triggerOn: outputs-changed", "triggerOn: 2024-01-01")
    for command in (["diff"], ["apply", "--yes"]):
        failed(
            cascade.as_admin("autodeploy", *command, write(tmp_path, "dated.yaml", dated), "--org", org),
            "cannot send this: stacks[2].downstreamRefs[0].triggerOn is a date or time",
            "quote it",
        )
    nan = json.dumps(yaml.safe_load(DIAMOND)).replace('"outputs-changed"', "NaN")
    failed(
        cascade.as_admin("autodeploy", "diff", "-", "--org", org, input=nan),
        "stacks[2].downstreamRefs[0].triggerOn is NaN or infinite, which JSON cannot carry",
    )
    assert managed_edges(cascade, org) == []


def test_a_character_yaml_does_not_accept_is_reported_on_one_line(
    cascade: Cascade, diamond: str, tmp_path: Path
) -> None:
    org = diamond
    control = failed(
        cascade.as_admin("autodeploy", "diff", write(tmp_path, "nul.yaml", "stacks: [\x00]\n"), "--org", org),
        "is not valid YAML: unacceptable character #x0000",
    )
    assert control.count("\n") == 1


def test_the_question_before_apply_writes_nothing_to_stdout(cascade: Cascade, diamond: str, tmp_path: Path) -> None:
    org = diamond
    file = write(tmp_path, "graph.yaml", DIAMOND)
    applied = ok(cascade.as_admin("autodeploy", "apply", file, "--org", org, "--json", input="y\n"))
    assert applied.stdout.startswith("{") and json.loads(applied.stdout)["applied"] is True
    assert applied.stderr == f"Apply these changes to organization {org}? [y/N]: \n"
    removed = write(tmp_path, "empty.yaml", "stacks: []\n")
    deleted = ok(cascade.as_admin("autodeploy", "apply", removed, "--org", org, input="yes\n"))
    assert (
        deleted.stdout.splitlines()[-1]
        == f"Applied to organization {org}: 0 created, 0 updated, 4 deleted, 0 unchanged."
    )
    assert managed_edges(cascade, org) == []


def test_a_diff_that_leaves_things_out_does_not_say_the_declaration_matches(
    cascade: Cascade, diamond: str, tmp_path: Path
) -> None:
    org = diamond
    ok(cascade.as_admin("autodeploy", "apply", write(tmp_path, "Pulumi.yaml", LAYERED_PROGRAM), "--org", org, "--yes"))
    file = write(tmp_path, "more.yaml", LAYERED_PROGRAM + "  bucket:\n    type: aws:s3:Bucket\n")
    result = cascade.as_admin("autodeploy", "diff", file, "--org", org)
    assert result.exit_code == 1
    assert result.stdout == (
        "No changes to what stackcascade can honour (0 to create, 0 to update, 0 to delete, 4 unchanged); "
        "the rest is listed below.\n"
    )
    # the diff, then what it leaves out, then the error that refers to it (as `show FILE` prints them)
    lines = result.output.splitlines()
    assert lines[0].startswith("No changes to what stackcascade can honour")
    assert lines[1] == f"The Pulumi program {file} has 1 thing stackcascade cannot honour:"
    assert lines[2].startswith("  - resources.bucket: resource type 'aws:s3:Bucket' is not supported")
    assert lines[3].startswith("error: the diff leaves out what")
    assert len(lines) == 4


def test_a_secret_config_value_misused_by_a_program_is_never_printed(
    cascade: Cascade, diamond: str, tmp_path: Path
) -> None:
    org = diamond
    data = yaml.safe_load(LAYERED_PROGRAM)
    data["config"] = {
        "hookSecret": {"type": "string", "secret": True, "default": "CONFIGSECRET-1"},
        "refSecret": {"type": "string", "secret": True, "default": "app/CONFIGSECRET-2"},
    }
    data["variables"]["joined"] = {"fn::join": ["-", ["x", "${hookSecret}"]]}
    data["resources"]["network"]["properties"]["downstreamRefs"] += ["${hookSecret}", "${refSecret}"]
    data["resources"]["app"]["properties"]["downstreamRefs"] = "${refSecret}"
    data["resources"]["hook"] = {
        "type": "pulumiservice:Webhook",
        "properties": {
            "organizationName": "${pulumi.organization}",
            "projectName": "app",
            "stackName": "prod",
            "format": "pulumi_deployments",
            "payloadUrl": "network/prod",
            "active": "${hookSecret}",
        },
    }
    data["outputs"] = {"bad": "${hookSecret.nope}", "worse": {"fn::select": [0, "${joined.x}"]}}
    file = write(tmp_path, "Pulumi.yaml", yaml.safe_dump(data, sort_keys=False))
    planned = cascade.as_admin("autodeploy", "diff", file, "--org", org, "--json")
    shown = cascade.as_admin("autodeploy", "show", file, "--org", org)
    refused = cascade.as_admin("autodeploy", "apply", file, "--org", org, "--yes")
    for result in (planned, shown, refused, cascade.as_admin("autodeploy", "diff", file, "--org", org)):
        assert result.exit_code == 1 and "CONFIGSECRET" not in result.output
    answer = json.loads(planned.stdout)
    assert len(answer["problems"]) == 6 and len(answer["diff"]["create"]) == 4
    assert sum("(a secret value, not shown)" in problem for problem in answer["problems"]) == 6
    assert "has 6 things stackcascade cannot honour" in shown.stderr
    assert managed_edges(cascade, org) == []
