"""Pure builders of settings and deployment request documents, and the flat view of settings for display."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stackcascade.cli.errors import CliError

Json = dict[str, Any]
MASK = "[secret]"


@dataclass(frozen=True, slots=True)
class SettingsFlags:
    """What the settings and deploy options can set; None (or empty) means "not given"."""

    repo_url: str | None = None
    branch: str | None = None
    commit: str | None = None
    repo_dir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    pre_run: Sequence[str] = ()
    shell: str | None = None
    skip_intermediate: bool | None = None

    def is_empty(self) -> bool:
        return not any(
            (
                self.repo_url,
                self.branch,
                self.commit,
                self.repo_dir,
                self.env,
                self.secret_env,
                self.pre_run,
                self.shell,
            )
        ) and (self.skip_intermediate is None)


def load_document(path: Path) -> Json:
    """A settings document from a JSON or YAML file (``settings get --json`` output is accepted as is)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CliError(
            f"{path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {first_line}"
        ) from None
    if not isinstance(data, dict):
        raise CliError(f"{path} must hold a settings object (sourceContext, operationContext, ...)")
    return data


def _child(document: Json, key: str) -> Json:
    """The sub-object at ``key``, matched case-insensitively like the server does (repoURL is repoUrl)."""
    existing = next((k for k in document if str(k).lower() == key.lower()), None)
    if existing is not None and existing != key:
        document[key] = document.pop(existing)
    node = document.get(key)
    if not isinstance(node, dict):
        node = {}
        document[key] = node
    return node


def _put(document: Json, path: Sequence[str], value: object) -> None:
    node = document
    for key in path[:-1]:
        node = _child(node, key)
    leaf = path[-1]
    for existing in [k for k in node if str(k).lower() == leaf.lower()]:
        del node[existing]
    node[leaf] = value


def apply_flags(base: Json, flags: SettingsFlags) -> Json:
    """``flags`` laid over a copy of ``base``, in the API's settings shape. Secrets become ``{"secret": value}``."""
    overlap = sorted(set(flags.env) & set(flags.secret_env))
    if overlap:
        raise CliError(f"{', '.join(overlap)} given both as --env and --secret-env")
    document: Json = json.loads(json.dumps(base))  # a deep copy of plain JSON
    git = ("sourceContext", "git")
    for name, value in (
        ("repoUrl", flags.repo_url),
        ("branch", flags.branch),
        ("commit", flags.commit),
        ("repoDir", flags.repo_dir),
    ):
        if value is not None:
            _put(document, (*git, name), value)
    env_path = ("operationContext", "environmentVariables")
    for name, plain in flags.env.items():
        _put(document, (*env_path, name), plain)
    for name, secret in flags.secret_env.items():
        _put(document, (*env_path, name), {"secret": secret})
    if flags.pre_run:
        _put(document, ("operationContext", "preRunCommands"), list(flags.pre_run))
    if flags.shell is not None:
        _put(document, ("operationContext", "options", "shell"), flags.shell)
    if flags.skip_intermediate is not None:
        _put(document, ("operationContext", "options", "skipIntermediateDeployments"), flags.skip_intermediate)
    return document


def deployment_request(operation: str, *, inherit: bool, flags: SettingsFlags) -> Json:
    """A create-deployment body: the operation, whether saved settings apply, and one-off overrides."""
    return {"operation": operation, "inheritSettings": inherit, **apply_flags({}, flags)}


def _is_secret_value(value: Mapping[str, Any]) -> bool:
    return bool(value.get("secret")) or "ciphertext" in value


def flatten_settings(settings: Json) -> list[tuple[str, str]]:
    """``(dotted.path, shown value)`` rows; a secret shows as ``[secret]`` whatever the server sent."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict) and ({"secret", "ciphertext", "plaintext"} & set(value)):
            rows.append((prefix, MASK if _is_secret_value(value) else str(value.get("plaintext", ""))))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(f"{prefix}[{index}]", item)
        else:
            rows.append((prefix, json.dumps(value) if isinstance(value, bool) else str(value)))

    walk("", {k: v for k, v in settings.items() if k not in {"version", "source"}})
    return rows
