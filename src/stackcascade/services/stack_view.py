"""What the console's stack and deployment pages show that no API answer has in one piece.

Read-only: a stack's direct deployment edges with their options, the settings as a person reads
them (every secret masked, its ciphertext never included) and where another deployment of the org
lives, for a "triggered by" link.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from stackcascade.domain import settings as doc
from stackcascade.domain.roles import Principal, Role
from stackcascade.services.context import Context
from stackcascade.services.stacks import load, ref
from stackcascade.store import cascades as cascade_rows
from stackcascade.store import deployments as deployment_rows

MASK = "••••••"


@dataclass(frozen=True, slots=True)
class EdgeView:
    """One deployment edge as seen from one of its ends: ``stack`` is the other end."""

    stack: str
    trigger_on: str
    require_approval: bool
    stack_gated: bool
    filters: tuple[str, ...]

    @property
    def project(self) -> str:
        return self.stack.partition("/")[0]

    @property
    def name(self) -> str:
        return self.stack.partition("/")[2]


@dataclass(frozen=True, slots=True)
class Neighbours:
    upstream: list[EdgeView]
    downstream: list[EdgeView]
    gated: frozenset[str]  # stacks ("project/stack") that wait for an approval in every cascade


async def neighbours(ctx: Context, principal: Principal, org: str, project: str, stack: str) -> Neighbours:
    """The stack's direct upstream and downstream edges, read with the org's edges in one query."""
    principal.require(org, Role.VIEWER, f"stack {ref(org, project, stack)}")
    node = f"{project}/{stack}"
    async with ctx.db.read() as conn:
        await load(conn, org, project, stack)
        specs = await cascade_rows.edge_specs(conn, org)
    gated = frozenset(spec.downstream for spec in specs if spec.downstream_gated)
    upstream = [_edge(spec, spec.upstream, gated) for spec in specs if spec.downstream == node]
    downstream = [_edge(spec, spec.downstream, gated) for spec in specs if spec.upstream == node]
    return Neighbours(sorted(upstream, key=_by_stack), sorted(downstream, key=_by_stack), gated)


def _edge(spec: Any, other: str, gated: frozenset[str]) -> EdgeView:
    return EdgeView(
        stack=other,
        trigger_on=str(spec.trigger_on),
        require_approval=bool(spec.require_approval),
        stack_gated=spec.downstream in gated,
        filters=tuple(spec.filters or ()),
    )


def _by_stack(edge: EdgeView) -> str:
    return edge.stack


async def locate_deployment(ctx: Context, principal: Principal, org: str, deployment_id: str) -> str | None:
    """``project/stack`` of a deployment of this org (None when there is no such deployment there)."""
    principal.require(org, Role.VIEWER, f"deployment {deployment_id}")
    async with ctx.db.read() as conn:
        row = await deployment_rows.get(conn, deployment_id)
    if row is None or row.org != org:
        return None
    return f"{row.project}/{row.stack}"


# --- settings as a person reads them -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    value: str | None  # None: a secret, shown masked

    @property
    def secret(self) -> bool:
        return self.value is None


@dataclass(frozen=True, slots=True)
class SettingsView:
    """Deployment settings with every secret replaced by a mask: safe to put in a page."""

    version: int | None
    repo_url: str | None = None
    branch: str | None = None
    commit: str | None = None
    git_tag: str | None = None
    repo_dir: str | None = None
    credentials: tuple[str, ...] = ()
    pre_run_commands: tuple[str, ...] = ()
    variables: tuple[Variable, ...] = ()
    options: dict[str, object] = field(default_factory=dict)
    other: dict[str, str] = field(default_factory=dict)  # the rest, as masked JSON text


_CREDENTIALS = (
    (("accessToken",), "access token"),
    (("basicAuth", "userName"), "basic auth user name"),
    (("basicAuth", "password"), "basic auth password"),
    (("sshAuth", "sshPrivateKey"), "SSH private key"),
    (("sshAuth", "password"), "SSH key passphrase"),
)


def settings_view(document: dict[str, Any], version: int | None) -> SettingsView:
    git = doc.git_source(document)
    auth = _object(git.get("gitAuth"))
    context = _object(document.get("operationContext"))
    options = _object(context.get("options"))
    other = {
        key: json.dumps(_masked(value), indent=2, sort_keys=True)
        for key, value in sorted(document.items())
        if key not in {"sourceContext", "operationContext"}
    }
    other |= {
        f"operationContext.{key}": json.dumps(_masked(value), indent=2, sort_keys=True)
        for key, value in sorted(context.items())
        if key not in {"preRunCommands", "environmentVariables", "options"}
    }
    return SettingsView(
        version=version,
        repo_url=doc.redact_repo_url(repo_url) if (repo_url := _text(git.get("repoUrl"))) else None,
        branch=_text(git.get("branch")),
        commit=_text(git.get("commit")),
        git_tag=_text(git.get("tag")),
        repo_dir=_text(git.get("repoDir")),
        credentials=tuple(label for path, label in _CREDENTIALS if _dig(auth, path) is not None),
        pre_run_commands=tuple(str(c) for c in context.get("preRunCommands") or ()),
        variables=tuple(Variable(name, value) for name, value in sorted(doc.environment(document))),
        options={key: _masked(value) for key, value in sorted(options.items())},
        other=other,
    )


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _masked(value: Any) -> Any:
    """The value with every sealed secret (``{"ciphertext": ...}``) replaced by the mask."""
    if isinstance(value, dict):
        if "ciphertext" in value:
            return MASK
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value
