"""The *operation* step: find which runtime a project uses and run an operation with it.

Runtimes: ``pulumi`` (``Pulumi.yaml``), ``tofu`` (``*.tf``; ``terraform`` when only that CLI is
installed) and ``command`` (``Cascade.yaml`` mapping operations to shell commands). The CLIs' human
output is streamed to the step log as it is; resource change counts are read from the summary the CLIs
print at the end (pulumi's ``Resources:`` block, tofu's ``Apply complete! Resources: ...`` line)
rather than from ``--json`` modes, which would replace the readable log. Outputs are read only after a
successful ``update`` and never written to the log.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from stackcascade.runner.process import run_process
from stackcascade.runner.types import OPERATIONS, OperationResult, Project, RunContext, StepFailed

# libyaml's loader where PyYAML was built with it: the same documents, errors and marks, at a tenth of
# the pure-Python loader's CPU (Cascade.yaml is read on every command deployment).
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

NO_PROJECT = "no recognisable project in {dir}: expected Pulumi.yaml, *.tf or Cascade.yaml"
SECRET_PLACEHOLDER = "[secret]"  # noqa: S105 - what `pulumi stack output --json` prints for a secret without --show-secrets

_PULUMI_ARGS: dict[str, list[str]] = {
    "update": ["up", "--yes", "--skip-preview", "--non-interactive"],
    "preview": ["preview", "--non-interactive"],
    "refresh": ["refresh", "--yes", "--non-interactive"],
    "destroy": ["destroy", "--yes", "--non-interactive"],
}
_TOFU_ARGS: dict[str, list[str]] = {
    "update": ["apply", "-auto-approve", "-input=false"],
    "preview": ["plan", "-input=false"],
    "refresh": ["apply", "-refresh-only", "-auto-approve", "-input=false"],
    "destroy": ["destroy", "-auto-approve", "-input=false"],
}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# pulumi: "    + 2 created", "    +-1 to replace", "    3 unchanged", "    4 changes. 2 unchanged"
_PULUMI_ITEM = re.compile(r"^(?:[-+~<>=*!]+\s*)?(\d+)\s+(?:to\s+)?([a-z]+)")
_PULUMI_KINDS = {
    "created": "create", "create": "create",
    "updated": "update", "update": "update",
    "deleted": "delete", "delete": "delete",
    "replaced": "replace", "replace": "replace",
    "imported": "import", "import": "import",
    "discarded": "discard", "discard": "discard",
    "read": "read",
    "unchanged": "same",
}  # fmt: skip
# tofu/terraform: "Apply complete! Resources: 1 added, 0 changed, 0 destroyed.", "Plan: 1 to add, ..."
_TOFU_SUMMARY = re.compile(r"^(?:Apply complete!|Destroy complete!|Plan:)")
_TOFU_ITEM = re.compile(r"(\d+) (?:to )?(add|change|destroy|import)(?:ed|d)?\b")
_TOFU_KINDS = {"add": "create", "change": "update", "destroy": "delete", "import": "import"}


def detect(project_dir: Path) -> Project:
    """The runtime of the project in ``project_dir``; pulumi wins over tofu, which wins over command."""
    if not project_dir.is_dir():
        raise StepFailed(NO_PROJECT.format(dir=project_dir))
    if (project_dir / "Pulumi.yaml").is_file() or (project_dir / "Pulumi.yml").is_file():
        return Project(path=project_dir, runtime="pulumi")
    if any(path.is_file() for pattern in ("*.tf", "*.tf.json") for path in project_dir.glob(pattern)):
        return Project(path=project_dir, runtime="tofu")
    if (project_dir / "Cascade.yaml").is_file():
        return Project(path=project_dir, runtime="command")
    raise StepFailed(NO_PROJECT.format(dir=project_dir))


async def run_operation(project: Project, operation: str, ctx: RunContext, *, outputs_file: Path) -> OperationResult:
    """Run ``operation`` on ``project``; raises StepFailed with a short reason on any failure."""
    if operation not in OPERATIONS:
        raise StepFailed(f"unknown operation '{operation}'")
    runner = _RUNTIMES.get(project.runtime)
    if runner is None:
        raise StepFailed(f"unknown runtime '{project.runtime}'")
    return await runner(project.path, operation, ctx, outputs_file)


async def _pulumi(path: Path, operation: str, ctx: RunContext, outputs_file: Path) -> OperationResult:
    cli = _which("pulumi", ctx)
    if cli is None:
        raise StepFailed("the pulumi CLI is not installed on this runner")
    if not ctx.stack:
        raise StepFailed("no stack name given for the pulumi runtime")
    stack = ["--stack", ctx.stack]
    await _run([cli, "stack", "select", "--create", *stack, "--non-interactive"], path, ctx, "pulumi stack select")
    lines = await _run([cli, *_PULUMI_ARGS[operation], *stack], path, ctx, f"pulumi {operation}")
    result = OperationResult(resource_changes=parse_pulumi_summary(lines))
    if operation == "update":
        shown = [cli, "stack", "output", "--json", "--show-secrets", *stack]
        values = _json_object(await _run(shown, path, ctx, "pulumi stack output", capture=True), "pulumi stack output")
        hidden = [cli, "stack", "output", "--json", *stack]
        masked = _json_object(await _run(hidden, path, ctx, "pulumi stack output", capture=True), "pulumi stack output")
        result.outputs = values
        result.secret_outputs = frozenset(
            name for name, value in masked.items() if value == SECRET_PLACEHOLDER and values.get(name) != value
        )
    return result


async def _tofu(path: Path, operation: str, ctx: RunContext, outputs_file: Path) -> OperationResult:
    cli = _which("tofu", ctx) or _which("terraform", ctx)
    if cli is None:
        raise StepFailed("neither the tofu nor the terraform CLI is installed on this runner")
    tool = Path(cli).name
    await _run([cli, "init", "-input=false"], path, ctx, f"{tool} init")
    lines = await _run([cli, *_TOFU_ARGS[operation]], path, ctx, f"{tool} {operation}")
    result = OperationResult(resource_changes=parse_tofu_summary(lines))
    if operation == "update":
        document = _json_object(
            await _run([cli, "output", "-json"], path, ctx, f"{tool} output", capture=True), f"{tool} output"
        )
        outputs: dict[str, Any] = {}
        secrets: set[str] = set()
        for name, entry in document.items():
            if not isinstance(entry, dict) or "value" not in entry:
                raise StepFailed(f"{tool} output -json printed an unexpected entry for '{name}'")
            outputs[name] = entry["value"]
            if entry.get("sensitive"):
                secrets.add(name)
        result.outputs, result.secret_outputs = outputs, frozenset(secrets)
    return result


async def _command(path: Path, operation: str, ctx: RunContext, outputs_file: Path) -> OperationResult:
    command = _cascade_command(path / "Cascade.yaml", operation)
    if "CASCADE_OUTPUTS" not in ctx.env:
        ctx = dataclasses.replace(ctx, env={**ctx.env, "CASCADE_OUTPUTS": str(outputs_file)})
    if operation == "update":
        outputs_file.unlink(missing_ok=True)  # never mistake a previous run's file for this one's
    await _run(None, path, ctx, f"command {operation}", command=command)
    if operation != "update":
        return OperationResult()
    outputs, secrets = _read_command_outputs(outputs_file)
    return OperationResult(outputs=outputs, secret_outputs=secrets)


def _cascade_command(file: Path, operation: str) -> str:
    try:
        document = yaml.load(file.read_text(encoding="utf-8"), Loader=_SafeLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise StepFailed(f"{file.name} is not valid YAML: {_yaml_problem(exc)}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise StepFailed(f"{file.name} cannot be read: {exc}") from exc
    operations = document.get("operations") if isinstance(document, dict) else None
    if not isinstance(operations, dict):
        raise StepFailed(f"{file.name} has no 'operations' mapping")
    command = operations.get(operation)
    if command is None:
        raise StepFailed(f"{file.name} defines no '{operation}' operation")
    if not isinstance(command, str) or not command.strip():
        raise StepFailed(f"{file.name}: the '{operation}' operation must be a command string")
    return command


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _read_command_outputs(outputs_file: Path) -> tuple[dict[str, Any], frozenset[str]]:
    """The JSON object written to $CASCADE_OUTPUTS; ``{"secret": v}`` marks an output secret."""
    try:
        text = outputs_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, frozenset()
    except (OSError, UnicodeDecodeError) as exc:
        raise StepFailed(f"the outputs file cannot be read: {exc}") from exc
    if not text.strip():
        return {}, frozenset()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StepFailed(f"the outputs written to $CASCADE_OUTPUTS are not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise StepFailed("the outputs written to $CASCADE_OUTPUTS must be a JSON object")
    outputs: dict[str, Any] = {}
    secrets: set[str] = set()
    for name, value in document.items():
        if isinstance(value, dict) and set(value) == {"secret"}:
            outputs[name] = value["secret"]
            secrets.add(name)
        else:
            outputs[name] = value
    return outputs, frozenset(secrets)


def parse_pulumi_summary(lines: Sequence[str]) -> dict[str, int] | None:
    """Counts from the last ``Resources:`` block pulumi printed (None when there is none).

    Always has create/update/delete/same; other kinds (replace, import, ...) only when printed.
    """
    clean = [_ANSI.sub("", line) for line in lines]
    starts = [index for index, line in enumerate(clean) if line.strip() == "Resources:"]
    if not starts:
        return None
    counts = {"create": 0, "update": 0, "delete": 0, "same": 0}
    for line in clean[starts[-1] + 1 :]:
        if not line.strip() or not line[:1].isspace():
            break
        for part in line.strip().split(". "):
            match = _PULUMI_ITEM.match(part.strip())
            kind = _PULUMI_KINDS.get(match.group(2)) if match else None
            if match and kind:
                counts[kind] = counts.get(kind, 0) + int(match.group(1))
    return counts


def parse_tofu_summary(lines: Sequence[str]) -> dict[str, int] | None:
    """Counts from the last summary line tofu/terraform printed (None when there is none)."""
    for line in reversed(lines):
        text = _ANSI.sub("", line).strip()
        if text.startswith("No changes."):
            return {"create": 0, "update": 0, "delete": 0}
        if _TOFU_SUMMARY.match(text):
            counts = {"create": 0, "update": 0, "delete": 0}
            for number, word in _TOFU_ITEM.findall(text):
                counts[_TOFU_KINDS[word]] = int(number)
            return counts
    return None


def _which(name: str, ctx: RunContext) -> str | None:
    return shutil.which(name, path=ctx.env.get("PATH", os.defpath))


def _json_object(lines: Sequence[str], what: str) -> dict[str, Any]:
    """The JSON object a CLI printed, tolerating warnings printed around it (stderr is merged)."""
    text = "\n".join(lines)
    candidates = [text] + [
        "\n".join(lines[index:]) for index, line in enumerate(lines) if line.lstrip().startswith("{")
    ]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        try:
            document, _ = decoder.raw_decode(candidate.lstrip())
        except json.JSONDecodeError:
            continue
        if isinstance(document, dict):
            return document
    raise StepFailed(f"{what} printed no JSON object")


async def _run(
    argv: list[str] | None,
    cwd: Path,
    ctx: RunContext,
    what: str,
    *,
    command: str = "",
    capture: bool = False,
) -> list[str]:
    """Run one process, streaming its lines to the log (or only keeping them, for output documents)."""
    lines: list[str] = []

    async def sink(line: str) -> None:
        lines.append(line)
        if not capture:
            await ctx.on_line(line)

    shown = shlex.join([Path(argv[0]).name, *argv[1:]]) if argv else command
    await ctx.on_line(f"$ {shown}")
    result = await run_process(command, cwd=cwd, ctx=dataclasses.replace(ctx, on_line=sink), argv=argv)
    if result.stopped:
        raise StepFailed(result.stopped)
    if result.exit_code != 0:
        if capture:  # the error text is what explains the failure; no document was printed
            for line in lines:
                await ctx.on_line(line)
        raise StepFailed(f"{what} failed (exit {result.exit_code})")
    return lines


_Runtime = Callable[[Path, str, RunContext, Path], Awaitable[OperationResult]]
_RUNTIMES: dict[str, _Runtime] = {"pulumi": _pulumi, "tofu": _tofu, "command": _command}
