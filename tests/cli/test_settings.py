"""``cascade settings get|set|rm``: flags and files become settings documents; secrets are never shown."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest

from tests.cli.cli_support import Cascade, details, failed, ok

SECRET = "s3cr3t-value-9f1c"


@pytest.fixture
def stack(cascade: Cascade, org: str) -> str:
    ref = f"{org}/net/prod"
    ok(cascade.as_admin("stack", "create", ref))
    return ref


def settings_path(stack: str) -> str:
    org, project, name = stack.split("/")
    return f"/api/stacks/{org}/{project}/{name}/deployments/settings"


def test_set_with_flags_saves_them_and_get_masks_the_secret(cascade: Cascade, stack: str, admin: httpx2.Client) -> None:
    saved = ok(
        cascade.as_admin(
            "settings", "set", stack,
            "--repo-url", "https://git.example.com/infra.git",
            "--branch", "main",
            "--repo-dir", "network",
            "--env", "REGION=eu-west-1",
            "--secret-env", f"API_KEY={SECRET}",
            "--pre-run", "make deps",
            "--pre-run", "make lint",
            "--shell", "sh",
            "--no-skip-intermediate",
        )
    )  # fmt: skip
    assert saved.stdout.strip() == f"Updated deployment settings of {stack} (version 1)"

    document = admin.get(settings_path(stack)).json()
    assert document["sourceContext"]["git"] == {
        "repoUrl": "https://git.example.com/infra.git",
        "branch": "main",
        "repoDir": "network",
    }
    assert document["operationContext"]["preRunCommands"] == ["make deps", "make lint"]
    assert document["operationContext"]["options"] == {"shell": "sh", "skipIntermediateDeployments": False}
    env = document["operationContext"]["environmentVariables"]
    assert env["REGION"] == {"secret": "", "plaintext": "eu-west-1"}
    assert env["API_KEY"]["secret"] == "[secret]"  # stored as a secret, not as plain text

    shown = ok(cascade.as_admin("settings", "get", stack))
    assert shown.stdout.startswith(f"Deployment settings of {stack} (version 1)")
    values = details(shown)
    assert values["operationContext.environmentVariables.API_KEY"] == "[secret]"
    assert values["operationContext.environmentVariables.REGION"] == "eu-west-1"
    assert values["sourceContext.git.repoUrl"] == "https://git.example.com/infra.git"
    assert values["operationContext.preRunCommands[1]"] == "make lint"
    assert values["operationContext.options.skipIntermediateDeployments"] == "false"
    as_json = ok(cascade.as_admin("settings", "get", stack, "--json"))
    assert json.loads(as_json.stdout) == document
    for result in (saved, shown, as_json):
        assert SECRET not in result.output


def test_set_from_a_yaml_file_with_flags_on_top(
    cascade: Cascade, stack: str, tmp_path: Path, admin: httpx2.Client
) -> None:
    file = tmp_path / "settings.yaml"
    file.write_text(
        "sourceContext:\n"
        "  git:\n"
        "    repoURL: https://git.example.com/infra.git\n"
        "    branch: main\n"
        "operationContext:\n"
        "  environmentVariables:\n"
        "    PLAIN: one\n"
        f"    TOKEN: {{secret: {SECRET}}}\n"
    )
    result = ok(cascade.as_admin("settings", "set", stack, "--file", str(file), "--branch", "release", "--json"))
    assert SECRET not in result.output
    printed = json.loads(result.stdout)
    assert printed == admin.get(settings_path(stack)).json()
    assert printed["sourceContext"]["git"] == {"repoUrl": "https://git.example.com/infra.git", "branch": "release"}
    assert printed["operationContext"]["environmentVariables"]["TOKEN"]["secret"] == "[secret]"

    shown = ok(cascade.as_admin("settings", "get", stack))
    assert details(shown)["operationContext.environmentVariables.TOKEN"] == "[secret]"
    assert details(shown)["operationContext.environmentVariables.PLAIN"] == "one"
    assert SECRET not in shown.output


def test_set_merges_by_default_and_replaces_with_replace(cascade: Cascade, stack: str, admin: httpx2.Client) -> None:
    ok(cascade.as_admin("settings", "set", stack, "--repo-url", "https://a/r.git", "--env", "A=1"))
    ok(cascade.as_admin("settings", "set", stack, "--env", "B=2"))
    merged = admin.get(settings_path(stack)).json()
    assert merged["sourceContext"]["git"]["repoUrl"] == "https://a/r.git"
    assert set(merged["operationContext"]["environmentVariables"]) == {"A", "B"}

    replaced = ok(cascade.as_admin("settings", "set", stack, "--replace", "--repo-url", "https://b/r.git"))
    assert replaced.stdout.startswith(f"Replaced deployment settings of {stack}")
    document = admin.get(settings_path(stack)).json()
    assert document["sourceContext"] == {"git": {"repoUrl": "https://b/r.git"}}
    assert "operationContext" not in document


def test_set_needs_something_to_set(cascade: Cascade, stack: str) -> None:
    failed(cascade.as_admin("settings", "set", stack), "nothing to set")


def test_server_validation_errors_come_through(cascade: Cascade, stack: str) -> None:
    failed(
        cascade.as_admin("settings", "set", stack, "--env", "1BAD=x"), "not a valid environment variable name", "(400)"
    )


def test_rm_deletes_the_settings(cascade: Cascade, stack: str, admin: httpx2.Client) -> None:
    ok(cascade.as_admin("settings", "set", stack, "--repo-url", "https://a/r.git"))
    assert ok(cascade.as_admin("settings", "rm", stack)).stdout.strip() == f"Deleted deployment settings of {stack}"
    assert admin.get(settings_path(stack)).status_code == 404
    failed(cascade.as_admin("settings", "get", stack), f"stack {stack} has no deployment settings (404)")


def test_rm_json_prints_the_settings_as_they_were(cascade: Cascade, stack: str, admin: httpx2.Client) -> None:
    ok(cascade.as_admin("settings", "set", stack, "--repo-url", "https://a/r.git", "--secret-env", "TOKEN=s3cr3t"))
    deleted = ok(cascade.as_admin("settings", "rm", stack, "--json"))
    assert "s3cr3t" not in deleted.stdout
    settings = json.loads(deleted.stdout)
    assert settings["sourceContext"]["git"]["repoUrl"] == "https://a/r.git"
    assert admin.get(settings_path(stack)).status_code == 404
