"""Auto Deploy declarations driving real cascades: the README's promotion chain and Pulumi's layered program,
applied with the real ``cascade`` executable against a real server with real local runners (both databases)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx2

from tests.domain.test_autodeploy import LAYERED_PROGRAM
from tests.e2e.helpers import cascade_of, cascade_yaml, deploy, ended, git_repo, member, wait_cascade
from tests.support import LiveServer

CASCADE = Path(sys.executable).parent / "cascade"
README = Path(__file__).resolve().parents[2] / "README.md"


def cli(server: LiveServer, tmp_path: Path, *args: str) -> str:
    """Run the real ``cascade`` executable as the server's admin; returns its stdout (it must succeed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    done = subprocess.run(
        [str(CASCADE), *args, "--server", server.url, "--token", server.admin_token],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"cascade {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def stack_with_settings(api: httpx2.Client, org: str, project: str, stack: str, repo: str) -> None:
    assert api.post(f"/api/stacks/{org}/{project}", json={"stackName": stack}).status_code == 200
    settings = {"sourceContext": {"git": {"repoUrl": repo, "branch": "main"}}}
    assert api.post(f"/api/stacks/{org}/{project}/{stack}/deployments/settings", json=settings).status_code == 200


def readme_promotion_document() -> str:
    """The ``promotion.yaml`` the README shows under Cascades."""
    text = README.read_text()
    found = re.search(r"\(`promotion\.yaml`\):\n\n```yaml\n(.*?)```", text, re.DOTALL)
    assert found, "the README no longer shows promotion.yaml"
    return found.group(1)


def test_the_readmes_promotion_chain_applied_with_the_cli_prunes_and_waits_for_a_person(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    image = tmp_path / "image"
    image.write_text("v1")
    update = f'printf \'{{"image": "%s"}}\' "$(cat {image})" > "$CASCADE_OUTPUTS"'
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update=update)})
    document = tmp_path / "promotion.yaml"
    document.write_text(readme_promotion_document())
    with pool_server.client() as api:
        for stack in ("dev", "staging", "prod"):
            stack_with_settings(api, org, "app", stack, repo)
        assert "app/staging" in cli(pool_server, tmp_path, "autodeploy", "diff", str(document), "--org", org)
        cli(pool_server, tmp_path, "autodeploy", "apply", str(document), "--org", org, "--yes")
        edges = {(e["upstream"], e["downstream"]): e for e in api.get(f"/api/orgs/{org}/graph").json()["edges"]}
        assert set(edges) == {("app/dev", "app/staging"), ("app/staging", "app/prod")}
        assert {e["triggerOn"] for e in edges.values()} == {"outputs-changed"}
        assert [k for k, e in edges.items() if e["requireApproval"]] == [("app/staging", "app/prod")]

        # A merge deploys dev: its outputs are new, staging follows, prod waits for a person.
        first = cascade_of_stack(api, org, "app/dev")
        waiting = wait_cascade(api, org, first, lambda c: member_of(c, "app/prod")["status"] == "awaiting-approval")
        assert member_of(waiting, "app/staging")["status"] == "succeeded"
        assert api.get(f"/api/stacks/{org}/app/prod/deployments").json()["deployments"] == []
        approved = cli(pool_server, tmp_path, "cascade", "approve", first, "app/prod", "--org", org)
        assert approved.startswith(f"Approved app/prod in cascade {first}")
        done = wait_cascade(api, org, first, ended)
        assert done["status"] == "succeeded" and member_of(done, "app/prod")["approvedBy"]

        # The same outputs again: staging is pruned, and prod with it; nobody is asked.
        second = wait_cascade(api, org, cascade_of_stack(api, org, "app/dev"), ended)
        assert {m["stack"]: (m["status"], m["reason"]) for m in second["members"]} == {
            "app/dev": ("succeeded", None),
            "app/staging": ("skipped", "outputs of app/dev unchanged"),
            "app/prod": ("skipped", "upstream app/staging skipped"),
        }

        # A new image: both edges fire again, and prod waits again.
        image.write_text("v2")
        third = cascade_of_stack(api, org, "app/dev")
        wait_cascade(api, org, third, lambda c: member_of(c, "app/prod")["status"] == "awaiting-approval")
        assert api.post(f"/api/orgs/{org}/cascades/{third}/members/app/prod/approve").status_code == 200
        done = wait_cascade(api, org, third, ended)
        assert done["status"] == "succeeded"
        assert api.get(f"/api/stacks/{org}/app/prod/outputs").json()["outputs"] == {"image": "v2"}
        assert len(api.get(f"/api/stacks/{org}/app/prod/deployments").json()["deployments"]) == 2


def cascade_of_stack(api: httpx2.Client, org: str, ref: str) -> str:
    deployment_id = deploy(api, f"{org}/{ref}")
    return str(api.get(f"/api/stacks/{org}/{ref}/deployments/{deployment_id}").json()["cascadeId"])


def member_of(cascade: dict[str, object], stack: str) -> dict[str, object]:
    members = cascade["members"]
    assert isinstance(members, list)
    return dict(next(m for m in members if m["stack"] == stack))


def test_pulumis_layered_program_applied_with_the_cli_drives_the_diamond_and_a_new_declaration_the_next_cascade(
    pool_server: LiveServer, org: str, tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo", {"Cascade.yaml": cascade_yaml(update="echo deployed $CASCADE_PROJECT")})
    program = tmp_path / "Pulumi.yaml"
    program.write_text(LAYERED_PROGRAM)
    with pool_server.client() as api:
        for project in ("network", "database", "cluster", "app"):
            stack_with_settings(api, org, project, "prod", repo)
        cli(pool_server, tmp_path, "autodeploy", "apply", str(program), "--org", org, "--yes")
        first = wait_cascade(api, org, cascade_of(api, org, deploy(api, f"{org}/network/prod")), ended)
        assert first["status"] == "succeeded"
        assert first["waves"] == [["network/prod"], ["cluster/prod", "database/prod"], ["app/prod"]]
        app = member(first, "app")
        assert app["started"] >= max(member(first, "database")["finished"], member(first, "cluster")["finished"])

        # A declaration without cluster -> app: the dry run changes nothing, the apply deletes that one edge.
        declaration = {
            "stacks": [
                {"project": "network", "stack": "prod", "downstreamRefs": ["database/prod", "cluster/prod"]},
                {"project": "database", "stack": "prod", "downstreamRefs": ["app/prod"]},
            ]
        }
        diff = api.put(f"/api/orgs/{org}/autodeploy", json=declaration, params={"dryRun": "true"}).json()
        assert [(e["upstream"], e["downstream"]) for e in diff["diff"]["delete"]] == [("cluster/prod", "app/prod")]
        assert len(api.get(f"/api/orgs/{org}/graph").json()["edges"]) == 4  # a dry run changes nothing
        applied = api.put(f"/api/orgs/{org}/autodeploy", json=declaration)
        assert applied.status_code == 200, applied.text
        second = wait_cascade(api, org, cascade_of(api, org, deploy(api, f"{org}/network/prod")), ended)
        assert second["status"] == "succeeded"
        assert second["waves"] == [["network/prod"], ["cluster/prod", "database/prod"], ["app/prod"]]
        assert [(e["upstream"], e["downstream"]) for e in second["edges"]] == [
            ("database/prod", "app/prod"),
            ("network/prod", "cluster/prod"),
            ("network/prod", "database/prod"),
        ]
        assert len(api.get(f"/api/stacks/{org}/app/prod/deployments").json()["deployments"]) == 2  # once a cascade
