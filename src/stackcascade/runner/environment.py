"""The environment of every process of a deployment (design section 3.5)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Variables of the runner itself that a deployment must not inherit.
_RUNNER_PRIVATE = ("CASCADE_RUNNER_TOKEN", "CASCADE_SECRET_KEY", "CASCADE_ADMIN_TOKEN", "CASCADE_DATABASE_URL")


def build(
    base: Mapping[str, str], job: Mapping[str, Any], *, api_url: str, files: Mapping[str, Path]
) -> dict[str, str]:
    """The runner's own environment, then the settings' variables, then our identity variables.

    Identity variables come last so a settings variable cannot impersonate another deployment.
    """
    env = {k: v for k, v in base.items() if k not in _RUNNER_PRIVATE}
    env.update({str(k): str(v) for k, v in dict(job.get("environment") or {}).items()})
    source = job.get("source") or {}
    identity = {
        "CASCADE_API_URL": api_url,
        "CASCADE_TOKEN": str(job["deploymentToken"]),
        "CASCADE_ORG": str(job["org"]),
        "CASCADE_PROJECT": str(job["project"]),
        "CASCADE_STACK": str(job["stack"]),
        "CASCADE_OPERATION": str(job["operation"]),
        "CASCADE_DEPLOYMENT_ID": str(job["deploymentId"]),
        "CASCADE_VERSION": str(job["version"]),
        "CASCADE_UPSTREAM_OUTPUTS": str(files["upstream"]),
        "CASCADE_ENV": str(files["env"]),
        "CASCADE_OUTPUTS": str(files["outputs"]),
        "PULUMI_CI_SYSTEM": "stackcascade",
        "PULUMI_CI_BUILD_ID": str(job["deploymentId"]),
        "PULUMI_CI_BUILD_NUMBER": str(job["version"]),
        "PULUMI_CI_BUILD_TYPE": str(job["operation"]),
        "PULUMI_CI_BUILD_URL": f"{api_url.rstrip('/')}/{job['org']}/{job['project']}/{job['stack']}/deployments/{job['deploymentId']}",
    }
    if source.get("branch"):
        identity["PULUMI_CI_BRANCH_NAME"] = str(source["branch"])
    if source.get("commit"):
        identity["PULUMI_CI_PULL_REQUEST_SHA"] = str(source["commit"])
    if job.get("cascadeId"):
        identity["CASCADE_CASCADE_ID"] = str(job["cascadeId"])
    env.update(identity)
    return env


def write_upstream_outputs(path: Path, outputs: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(dict(outputs), indent=2, sort_keys=True))
    path.chmod(0o600)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines a pre-run command appended to ``$CASCADE_ENV`` (blank lines and # comments skipped)."""
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if key.isidentifier():
            values[key] = value
    return values
