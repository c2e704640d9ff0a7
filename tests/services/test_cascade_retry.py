"""Retrying a failed cascade member re-runs the deployment that failed as it was (the root's operation and
one-off overrides; a member's update with its saved settings), asked for by the person who retried."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
import sqlalchemy as sa

from stackcascade.domain.deployments import Status
from stackcascade.domain.roles import Principal, Role, TokenKind
from stackcascade.services import cascades, deployment_settings, deployments, queue, webhooks
from stackcascade.services.context import Context
from stackcascade.services.webhooks import Scope
from stackcascade.store.schema import deployments as deployments_table
from tests.services.helpers import ADMIN, make_stack

ORG = "acme"
SAVED = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere", "branch": "main"}}}
# Someone else than the one who started the cascade: the retry is theirs.
ALICE = Principal(token_id="alice-token", name="alice", kind=TokenKind.ORG, org=ORG, role=Role.MEMBER)


async def chain(ctx: Context, *projects: str, filters: tuple[str, ...] = ("deployment_succeeded",)) -> None:
    """``projects[0] -> projects[1] -> ...``, each with saved settings; the edges fire on any operation's success."""
    for project in projects:
        await make_stack(ctx, ORG, project)
        await deployment_settings.save(ctx, ADMIN, ORG, project, "prod", SAVED, replace=True)
    for up, down in pairwise(projects):
        body = {"format": "pulumi_deployments", "payloadUrl": f"{down}/prod", "filters": list(filters)}
        await webhooks.create(ctx, ADMIN, Scope(ORG, up, "prod"), body)


async def run_next(ctx: Context, expect: str, status: Status = Status.SUCCEEDED) -> Any:
    row = await queue.claim(ctx, "r1")
    assert row is not None, f"nothing to run, expected {expect}"
    assert row.project == expect
    await queue.start(ctx, row.id, "r1")
    await queue.finish(ctx, row.id, "r1", status)
    return row


async def member_rows(ctx: Context, cascade_id: str) -> dict[str, Any]:
    _, rows = await cascades.get(ctx, ADMIN, ORG, cascade_id)
    return {m.stack.split("/")[0]: m for m in rows}


async def deployment(ctx: Context, deployment_id: str) -> Any:
    async with ctx.db.read() as conn:
        query = sa.select(deployments_table).where(deployments_table.c.id == deployment_id)
        return (await conn.execute(query)).one()


@pytest.mark.parametrize("operation", ["preview", "refresh", "destroy"])
async def test_retrying_a_failed_root_runs_its_operation_again_not_an_update(ctx: Context, operation: str) -> None:
    await chain(ctx, "network", "database")
    root = await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": operation})
    assert root.cascade_id is not None
    await run_next(ctx, "network", Status.FAILED)
    assert (await member_rows(ctx, root.cascade_id))["database"].status == "skipped"
    await cascades.retry(ctx, ALICE, ORG, root.cascade_id, "network/prod")
    again = (await member_rows(ctx, root.cascade_id))["network"]
    assert again.status == "queued" and again.deployment_id != root.id
    assert (await deployment(ctx, again.deployment_id)).operation == operation
    await run_next(ctx, "network")
    # The cascade's operation for its descendants is unchanged: they update.
    member = await run_next(ctx, "database")
    assert (await deployment(ctx, member.id)).operation == "update"
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert (cascade.status, cascade.operation) == ("succeeded", operation)


async def test_retrying_a_failed_root_keeps_the_one_off_overrides_it_was_given(ctx: Context) -> None:
    await chain(ctx, "network", "database")
    overrides = {
        "operation": "update",
        "sourceContext": {"git": {"branch": "hotfix"}},
        "operationContext": {"preRunCommands": ["make patch"], "environmentVariables": {"REGION": "eu-west-1"}},
    }
    root = await deployments.create(ctx, ADMIN, ORG, "network", "prod", overrides)
    failed = await deployment(ctx, root.id)
    assert failed.settings["sourceContext"]["git"]["branch"] == "hotfix"
    await run_next(ctx, "network", Status.FAILED)
    await cascades.retry(ctx, ALICE, ORG, root.cascade_id, "network/prod")
    again = await deployment(ctx, (await member_rows(ctx, root.cascade_id))["network"].deployment_id)
    assert again.settings == failed.settings
    assert again.settings["operationContext"]["preRunCommands"] == ["make patch"]
    # Overrides given to the root apply to the root only: its member still runs with its own saved settings.
    await run_next(ctx, "network")
    member = await run_next(ctx, "database")
    assert (await deployment(ctx, member.id)).settings == SAVED


async def test_a_retry_is_asked_for_by_the_person_who_retried(ctx: Context) -> None:
    await chain(ctx, "network", "database", "app")
    root = await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "update"})
    await run_next(ctx, "network", Status.FAILED)
    await cascades.retry(ctx, ALICE, ORG, root.cascade_id, "network/prod")
    again = await deployment(ctx, (await member_rows(ctx, root.cascade_id))["network"].deployment_id)
    assert (again.requested_by, again.initiator) == ("alice", "api")
    await run_next(ctx, "network")
    await run_next(ctx, "database", Status.FAILED)
    await cascades.retry(ctx, ALICE, ORG, root.cascade_id, "database/prod")
    member = await deployment(ctx, (await member_rows(ctx, root.cascade_id))["database"].deployment_id)
    assert (member.requested_by, member.initiator, member.operation) == ("alice", "cascade", "update")


async def test_retrying_a_failed_member_runs_an_update_with_its_saved_settings_as_they_are_now(ctx: Context) -> None:
    await chain(ctx, "network", "database")
    root = await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "refresh"})
    await run_next(ctx, "network")
    await run_next(ctx, "database", Status.FAILED)
    fixed = {"sourceContext": {"git": {"repoUrl": "file:///tmp/nowhere", "branch": "fixed"}}}
    await deployment_settings.save(ctx, ADMIN, ORG, "database", "prod", fixed, replace=True)
    await cascades.retry(ctx, ALICE, ORG, root.cascade_id, "database/prod")
    again = await deployment(ctx, (await member_rows(ctx, root.cascade_id))["database"].deployment_id)
    assert (again.operation, again.settings) == ("update", fixed)
    await run_next(ctx, "database")
    cascade, _ = await cascades.get(ctx, ADMIN, ORG, root.cascade_id)
    assert cascade.status == "succeeded"
