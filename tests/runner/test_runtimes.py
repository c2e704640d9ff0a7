"""Runtime detection and operations: the command runtime, and pulumi/tofu through fake CLIs on PATH."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from stackcascade.runner.runtimes import detect, parse_pulumi_summary, parse_tofu_summary, run_operation
from stackcascade.runner.types import OperationResult, Project, StepFailed
from tests.runner.helpers import FAKES, Log, make_context, python_bin

STACK = "acme/app/prod"


@pytest.fixture
def pybin(tmp_path: Path) -> Path:
    return python_bin(tmp_path / "python-bin")


@pytest.fixture
def env(tmp_path: Path, pybin: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": os.pathsep.join([str(FAKES), str(pybin), os.environ["PATH"]]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "FAKE_ARGV_LOG": str(tmp_path / "argv.log"),
        "CASCADE_OUTPUTS": str(tmp_path / "outputs.json"),
    }


def argv_log(env: dict[str, str]) -> list[list[str]]:
    path = Path(env["FAKE_ARGV_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def operate(project: Project, operation: str, env: dict[str, str], log: Log | None = None) -> OperationResult:
    ctx = make_context(env, log=log, stack=STACK)
    return await run_operation(project, operation, ctx, outputs_file=Path(env["CASCADE_OUTPUTS"]))


# --- detection -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "runtime"),
    [
        (["Pulumi.yaml"], "pulumi"),
        (["Pulumi.yml"], "pulumi"),
        (["main.tf"], "tofu"),
        (["main.tf.json"], "tofu"),
        (["Cascade.yaml"], "command"),
        (["Pulumi.yaml", "main.tf", "Cascade.yaml"], "pulumi"),
        (["main.tf", "Cascade.yaml"], "tofu"),
    ],
)
def test_detect(tmp_path: Path, files: list[str], runtime: str) -> None:
    for name in files:
        (tmp_path / name).write_text("")
    assert detect(tmp_path) == Project(path=tmp_path, runtime=runtime)


def test_detect_nothing(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("")
    (tmp_path / "main.tf").mkdir()  # a directory named like a file does not count
    with pytest.raises(StepFailed) as failed:
        detect(tmp_path)
    assert failed.value.reason == f"no recognisable project in {tmp_path}: expected Pulumi.yaml, *.tf or Cascade.yaml"


# --- command runtime -----------------------------------------------------------------------------


def command_project(directory: Path, operations: dict[str, str]) -> Project:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Cascade.yaml").write_text(json.dumps({"operations": operations}))  # JSON is YAML
    return detect(directory)


async def test_command_update_outputs_and_secrets(tmp_path: Path, env: dict[str, str]) -> None:
    document = {"url": "https://x", "count": 3, "password": {"secret": "hunter2"}, "nested": {"a": 1}}
    update = f"echo deploying; printf '%s' '{json.dumps(document)}' > \"$CASCADE_OUTPUTS\""
    project = command_project(tmp_path / "app", {"update": update})
    log = Log()
    result = await operate(project, "update", env, log)
    assert result.outputs == {"url": "https://x", "count": 3, "password": "hunter2", "nested": {"a": 1}}
    assert result.secret_outputs == frozenset({"password"})
    assert "deploying" in log.lines


async def test_command_runs_in_the_project_dir_with_the_shell(tmp_path: Path, env: dict[str, str]) -> None:
    project = command_project(tmp_path / "app", {"preview": 'echo "$PWD $0"'})
    log = Log()
    result = await operate(project, "preview", env, log)
    assert f"{project.path} bash" in log.lines
    assert result.outputs is None  # outputs only come from an update


@pytest.mark.parametrize("content", [None, "", "  \n"])
async def test_command_without_outputs_gives_empty_outputs(
    tmp_path: Path, env: dict[str, str], content: str | None
) -> None:
    outputs = Path(env["CASCADE_OUTPUTS"])
    outputs.write_text('{"stale": "from a previous run"}')
    write = "true" if content is None else f"printf '{content}' > \"$CASCADE_OUTPUTS\""
    project = command_project(tmp_path / "app", {"update": write})
    result = await operate(project, "update", env)
    assert result.outputs == {}
    assert result.secret_outputs == frozenset()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "the outputs written to $CASCADE_OUTPUTS are not valid JSON"),
        ("[1, 2]", "the outputs written to $CASCADE_OUTPUTS must be a JSON object"),
    ],
)
async def test_command_with_bad_outputs_fails(tmp_path: Path, env: dict[str, str], content: str, reason: str) -> None:
    project = command_project(tmp_path / "app", {"update": f"printf '{content}' > \"$CASCADE_OUTPUTS\""})
    with pytest.raises(StepFailed) as failed:
        await operate(project, "update", env)
    assert failed.value.reason.startswith(reason)


async def test_command_missing_operation_and_failures(tmp_path: Path, env: dict[str, str]) -> None:
    project = command_project(tmp_path / "app", {"update": "echo broken; exit 3"})
    with pytest.raises(StepFailed) as missing:
        await operate(project, "refresh", env)
    assert missing.value.reason == "Cascade.yaml defines no 'refresh' operation"
    log = Log()
    with pytest.raises(StepFailed) as failed:
        await operate(project, "update", env, log)
    assert failed.value.reason == "command update failed (exit 3)"
    assert "broken" in log.lines


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("operations: [unclosed", "Cascade.yaml is not valid YAML"),
        ("just a string", "Cascade.yaml has no 'operations' mapping"),
        ("operations:\n  update: [1, 2]\n", "Cascade.yaml: the 'update' operation must be a command string"),
    ],
)
async def test_command_invalid_cascade_yaml(tmp_path: Path, env: dict[str, str], text: str, reason: str) -> None:
    (tmp_path / "Cascade.yaml").write_text(text)
    with pytest.raises(StepFailed) as failed:
        await operate(Project(path=tmp_path, runtime="command"), "update", env)
    assert failed.value.reason.startswith(reason)


async def test_command_cancelled_and_timed_out(tmp_path: Path, env: dict[str, str]) -> None:
    project = command_project(tmp_path / "app", {"update": "sleep 30"})
    cancel = asyncio.Event()
    cancel.set()
    ctx = make_context(env, cancel=cancel, grace=1)
    with pytest.raises(StepFailed) as cancelled:
        await run_operation(project, "update", ctx, outputs_file=Path(env["CASCADE_OUTPUTS"]))
    assert cancelled.value.reason == "cancelled"
    ctx = make_context(env, timeout=0.3, grace=1)
    with pytest.raises(StepFailed) as timed_out:
        await run_operation(project, "update", ctx, outputs_file=Path(env["CASCADE_OUTPUTS"]))
    assert timed_out.value.reason == "timed out"


async def test_unknown_operation(tmp_path: Path, env: dict[str, str]) -> None:
    project = command_project(tmp_path / "app", {"update": "true"})
    with pytest.raises(StepFailed) as failed:
        await operate(project, "deploy", env)
    assert failed.value.reason == "unknown operation 'deploy'"


# --- pulumi through the fake CLI -----------------------------------------------------------------


def pulumi_project(directory: Path, outputs: dict[str, object]) -> Project:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Pulumi.yaml").write_text("name: app\nruntime: yaml\n")
    (directory / "outputs.json").write_text(json.dumps(outputs))
    return detect(directory)


async def test_pulumi_update_outputs_secrets_and_changes(tmp_path: Path, env: dict[str, str]) -> None:
    project = pulumi_project(tmp_path / "app", {"url": "https://x", "password": {"secret": "hunter2"}})
    log = Log()
    result = await operate(project, "update", env, log)
    assert result.outputs == {"url": "https://x", "password": "hunter2"}
    assert result.secret_outputs == frozenset({"password"})
    assert result.resource_changes == {"create": 3, "update": 0, "delete": 0, "same": 0}  # 2 values + the stack
    assert argv_log(env) == [
        ["stack", "select", "--create", "--stack", STACK, "--non-interactive"],
        ["up", "--yes", "--skip-preview", "--non-interactive", "--stack", STACK],
        ["stack", "output", "--json", "--show-secrets", "--stack", STACK],
        ["stack", "output", "--json", "--stack", STACK],
    ]
    assert "Resources:" in log.lines  # the CLI's human output is the step log
    assert "hunter2" not in log.text  # the outputs documents are not logged

    (project.path / "outputs.json").write_text(json.dumps({"url": "https://y", "extra": 1}))
    result = await operate(project, "update", env)
    assert result.resource_changes == {"create": 1, "update": 1, "delete": 1, "same": 1}
    assert result.outputs == {"url": "https://y", "extra": 1}
    assert result.secret_outputs == frozenset()


async def test_pulumi_preview_refresh_destroy(tmp_path: Path, env: dict[str, str]) -> None:
    project = pulumi_project(tmp_path / "app", {"a": 1, "b": 2})
    preview = await operate(project, "preview", env)
    assert preview.resource_changes == {"create": 3, "update": 0, "delete": 0, "same": 0}
    assert preview.outputs is None
    await operate(project, "update", env)
    refresh = await operate(project, "refresh", env)
    assert refresh.resource_changes == {"create": 0, "update": 0, "delete": 0, "same": 3}
    destroy = await operate(project, "destroy", env)
    assert destroy.resource_changes == {"create": 0, "update": 0, "delete": 3, "same": 0}
    assert destroy.outputs is None
    operations = [argv for argv in argv_log(env) if argv[0] != "stack"]
    assert operations == [
        ["preview", "--non-interactive", "--stack", STACK],
        ["up", "--yes", "--skip-preview", "--non-interactive", "--stack", STACK],
        ["refresh", "--yes", "--non-interactive", "--stack", STACK],
        ["destroy", "--yes", "--non-interactive", "--stack", STACK],
    ]
    selects = [argv for argv in argv_log(env) if argv[:2] == ["stack", "select"]]
    assert len(selects) == 4  # every operation selects (and if needed creates) its stack first


@pytest.mark.parametrize(
    ("fail", "operation", "reason"),
    [
        ("up", "update", "pulumi update failed (exit 255)"),
        ("preview", "preview", "pulumi preview failed (exit 255)"),
        ("select", "update", "pulumi stack select failed (exit 255)"),
        ("output", "update", "pulumi stack output failed (exit 255)"),
    ],
)
async def test_pulumi_failures(tmp_path: Path, env: dict[str, str], fail: str, operation: str, reason: str) -> None:
    project = pulumi_project(tmp_path / "app", {"a": 1})
    log = Log()
    with pytest.raises(StepFailed) as failed:
        await operate(project, operation, {**env, "FAKE_FAIL": fail}, log)
    assert failed.value.reason == reason
    assert any("fake failure injected" in line for line in log.lines)  # the CLI's error reaches the log


async def test_pulumi_not_installed(tmp_path: Path, env: dict[str, str], pybin: Path) -> None:
    project = pulumi_project(tmp_path / "app", {})
    with pytest.raises(StepFailed) as failed:
        await operate(project, "update", {**env, "PATH": str(pybin)})
    assert failed.value.reason == "the pulumi CLI is not installed on this runner"


# --- tofu / terraform through the fake CLI -------------------------------------------------------


def tofu_project(directory: Path, outputs: dict[str, object]) -> Project:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.tf").write_text('resource "fake_value" "x" {}\n')
    (directory / "outputs.json").write_text(json.dumps(outputs))
    return detect(directory)


async def test_tofu_update_outputs_secrets_and_changes(tmp_path: Path, env: dict[str, str]) -> None:
    project = tofu_project(tmp_path / "infra", {"vpc": "vpc-1", "cidrs": ["10.0.0.0/16"], "key": {"secret": "k3y"}})
    log = Log()
    result = await operate(project, "update", env, log)
    assert result.outputs == {"vpc": "vpc-1", "cidrs": ["10.0.0.0/16"], "key": "k3y"}
    assert result.secret_outputs == frozenset({"key"})
    assert result.resource_changes == {"create": 3, "update": 0, "delete": 0}
    assert argv_log(env) == [
        ["tofu", "init", "-input=false"],
        ["tofu", "apply", "-auto-approve", "-input=false"],
        ["tofu", "output", "-json"],
    ]
    assert "Apply complete! Resources: 3 added, 0 changed, 0 destroyed." in log.lines
    assert "k3y" not in log.text

    (project.path / "outputs.json").write_text(json.dumps({"vpc": "vpc-2", "new": True}))
    result = await operate(project, "update", env)
    assert result.resource_changes == {"create": 1, "update": 1, "delete": 2}
    assert result.outputs == {"vpc": "vpc-2", "new": True}


async def test_tofu_preview_refresh_destroy(tmp_path: Path, env: dict[str, str]) -> None:
    project = tofu_project(tmp_path / "infra", {"a": 1, "b": 2})
    preview = await operate(project, "preview", env)
    assert preview.resource_changes == {"create": 2, "update": 0, "delete": 0}
    assert preview.outputs is None
    await operate(project, "update", env)
    assert (await operate(project, "preview", env)).resource_changes == {"create": 0, "update": 0, "delete": 0}
    assert (await operate(project, "refresh", env)).resource_changes == {"create": 0, "update": 0, "delete": 0}
    assert (await operate(project, "destroy", env)).resource_changes == {"create": 0, "update": 0, "delete": 2}
    operations = [argv[1:] for argv in argv_log(env) if argv[1] not in ("init", "output")]
    assert operations == [
        ["plan", "-input=false"],
        ["apply", "-auto-approve", "-input=false"],
        ["plan", "-input=false"],
        ["apply", "-refresh-only", "-auto-approve", "-input=false"],
        ["destroy", "-auto-approve", "-input=false"],
    ]
    assert sum(argv[1] == "init" for argv in argv_log(env)) == 5  # init before every operation


@pytest.mark.parametrize(
    ("fail", "operation", "reason"),
    [
        ("apply", "update", "tofu update failed (exit 1)"),
        ("refresh", "refresh", "tofu refresh failed (exit 1)"),
        ("init", "preview", "tofu init failed (exit 1)"),
        ("output", "update", "tofu output failed (exit 1)"),
    ],
)
async def test_tofu_failures(tmp_path: Path, env: dict[str, str], fail: str, operation: str, reason: str) -> None:
    project = tofu_project(tmp_path / "infra", {"a": 1})
    with pytest.raises(StepFailed) as failed:
        await operate(project, operation, {**env, "FAKE_FAIL": fail})
    assert failed.value.reason == reason


async def test_terraform_is_used_when_tofu_is_missing(tmp_path: Path, env: dict[str, str], pybin: Path) -> None:
    only_terraform = tmp_path / "terraform-bin"
    only_terraform.mkdir()
    (only_terraform / "terraform").symlink_to(FAKES / "tofu")
    project = tofu_project(tmp_path / "infra", {"a": "b"})
    log = Log()
    result = await operate(project, "update", {**env, "PATH": f"{only_terraform}{os.pathsep}{pybin}"}, log)
    assert result.outputs == {"a": "b"}
    assert [argv[0] for argv in argv_log(env)] == ["terraform", "terraform", "terraform"]
    assert "$ terraform init -input=false" in log.lines
    assert "Terraform has been successfully initialized!" in log.lines


async def test_neither_tofu_nor_terraform(tmp_path: Path, env: dict[str, str], pybin: Path) -> None:
    project = tofu_project(tmp_path / "infra", {})
    with pytest.raises(StepFailed) as failed:
        await operate(project, "update", {**env, "PATH": str(pybin)})
    assert failed.value.reason == "neither the tofu nor the terraform CLI is installed on this runner"


# --- summary parsing, on what the real CLIs print ------------------------------------------------


def test_pulumi_summary_forms() -> None:
    assert parse_pulumi_summary(["Resources:", "    + 2 created", "    1 unchanged", "", "Duration: 3s"]) == {
        "create": 2, "update": 0, "delete": 0, "same": 1,
    }  # fmt: skip
    assert parse_pulumi_summary(
        ["Resources:", "    + 1 to create", "    ~ 1 to update", "    +-1 to replace", "    3 changes. 1 unchanged"]
    ) == {"create": 1, "update": 1, "delete": 0, "same": 1, "replace": 1}
    colored = ["\x1b[38;5;13m\x1b[1mResources:\x1b[0m", "    \x1b[31m- 3 deleted\x1b[0m", "    1 unchanged"]
    assert parse_pulumi_summary(colored) == {"create": 0, "update": 0, "delete": 3, "same": 1}
    # Only the last block counts (a program may print the word itself earlier).
    assert parse_pulumi_summary(["Resources:", "    + 9 created", "", "Resources:", "    4 unchanged"]) == {
        "create": 0, "update": 0, "delete": 0, "same": 4,
    }  # fmt: skip
    assert parse_pulumi_summary(["error: update failed"]) is None


def test_tofu_summary_forms() -> None:
    assert parse_tofu_summary(["Apply complete! Resources: 1 added, 0 changed, 0 destroyed."]) == {
        "create": 1, "update": 0, "delete": 0,
    }  # fmt: skip
    assert parse_tofu_summary(["Apply complete! Resources: 2 imported, 1 added, 3 changed, 4 destroyed."]) == {
        "create": 1, "update": 3, "delete": 4, "import": 2,
    }  # fmt: skip
    assert parse_tofu_summary(["Plan: 0 to add, 2 to change, 1 to destroy."]) == {"create": 0, "update": 2, "delete": 1}
    assert parse_tofu_summary(["Destroy complete! Resources: 5 destroyed."]) == {"create": 0, "update": 0, "delete": 5}
    assert parse_tofu_summary(["No changes. Your infrastructure matches the configuration."]) == {
        "create": 0, "update": 0, "delete": 0,
    }  # fmt: skip
    colored = ["\x1b[0m\x1b[1m\x1b[32mApply complete! Resources: 1 added, 0 changed, 0 destroyed.\x1b[0m"]
    assert parse_tofu_summary(colored) == {"create": 1, "update": 0, "delete": 0}
    assert parse_tofu_summary(["Error: something"]) is None
