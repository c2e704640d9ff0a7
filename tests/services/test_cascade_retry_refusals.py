"""Retrying a cascade member that cannot run is refused as a whole, saying what to fix, with nothing written."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from stackcascade.domain.deployments import Status
from stackcascade.domain.errors import Conflict
from stackcascade.services import cascades, deployment_settings, deployments, stacks
from stackcascade.services.context import Context
from stackcascade.store.schema import cascade_members
from stackcascade.store.schema import cascades as cascades_table
from stackcascade.store.schema import deployments as deployments_table
from tests.services.helpers import ADMIN
from tests.services.test_cascade_retry import ALICE, ORG, chain, member_rows, run_next


async def snapshot(ctx: Context) -> tuple[list[str], ...]:
    """Every row a retry could write: the cascades, their members and the deployments."""
    tables = []
    async with ctx.db.read() as conn:
        for table in (cascades_table, cascade_members, deployments_table):
            tables.append(sorted(repr(tuple(row)) for row in (await conn.execute(sa.select(table))).all()))
    return tuple(tables)


def later(ctx: Context) -> None:
    """Move the clock on, so that any row a retry wrote would differ from before."""
    now = ctx.now()
    ctx.clock = lambda: now + 3600


async def test_retrying_a_member_without_deployment_settings_is_refused_and_writes_nothing(ctx: Context) -> None:
    await chain(ctx, "network", "database", "app")
    await deployment_settings.delete(ctx, ADMIN, ORG, "database", "prod")
    root = await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "update"})
    await run_next(ctx, "network")  # database is refused a deployment: failed, app skipped
    assert (await member_rows(ctx, root.cascade_id))["database"].status == "failed"
    before = await snapshot(ctx)
    later(ctx)
    with pytest.raises(Conflict, match=r"acme/database/prod has no deployment settings: save them first, then retry"):
        await cascades.retry(ctx, ALICE, ORG, root.cascade_id, "database/prod")
    assert await snapshot(ctx) == before


async def test_retrying_a_member_whose_settings_name_no_source_says_what_to_fix(ctx: Context) -> None:
    await chain(ctx, "network", "database")
    root = await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "update"})
    await run_next(ctx, "network")
    await run_next(ctx, "database", Status.FAILED)
    no_source = {"operationContext": {"preRunCommands": ["make"]}}
    await deployment_settings.save(ctx, ADMIN, ORG, "database", "prod", no_source, replace=True)
    before = await snapshot(ctx)
    later(ctx)
    with pytest.raises(Conflict, match=r"acme/database/prod.*sourceContext\.git\.repoUrl.*then retry"):
        await cascades.retry(ctx, ALICE, ORG, root.cascade_id, "database/prod")
    assert await snapshot(ctx) == before


async def test_retrying_a_member_whose_stack_was_deleted_is_refused_and_writes_nothing(ctx: Context) -> None:
    await chain(ctx, "network", "database", "app")
    root = await deployments.create(ctx, ADMIN, ORG, "network", "prod", {"operation": "update"})
    await run_next(ctx, "network")
    await run_next(ctx, "database", Status.FAILED)
    await stacks.delete(ctx, ADMIN, ORG, "database", "prod")
    before = await snapshot(ctx)
    later(ctx)
    with pytest.raises(Conflict, match=r"acme/database/prod was deleted"):
        await cascades.retry(ctx, ALICE, ORG, root.cascade_id, "database/prod")
    assert await snapshot(ctx) == before
