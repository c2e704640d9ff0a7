"""Building blocks for service-level tests."""

from __future__ import annotations

from typing import Any

from stackcascade.domain.roles import Principal, TokenKind
from stackcascade.services import deployments, stacks
from stackcascade.services.context import Context

ADMIN = Principal(token_id="test-admin", name="tester", kind=TokenKind.ADMIN)
SOURCE = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere", "branch": "main"}}}


async def make_stack(ctx: Context, org: str, project: str, name: str = "prod") -> Any:
    return await stacks.create(ctx, ADMIN, org, project, {"stackName": name})


async def queue(
    ctx: Context,
    org: str,
    project: str,
    name: str = "prod",
    *,
    operation: str = "update",
    skip_intermediate: bool = False,
) -> Any:
    body: dict[str, Any] = {"operation": operation, **SOURCE}
    if skip_intermediate:
        body["operationContext"] = {"options": {"skipIntermediateDeployments": True}}
    return await deployments.create(ctx, ADMIN, org, project, name, body)
