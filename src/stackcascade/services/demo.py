"""The demo organization of design section 1: network -> {database, cluster} -> app."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from stackcascade.services.context import Context
from stackcascade.store import events, orgs
from stackcascade.store import stacks as stack_rows
from stackcascade.store.schema import stacks as stacks_table

DEMO_ORG = "demo"
DEMO_STACKS = ("network", "database", "cluster", "app")
DEMO_EDGES = (("network", "database"), ("network", "cluster"), ("database", "app"), ("cluster", "app"))


async def seed(ctx: Context, repo_url: str) -> bool:
    """Create the demo stacks with settings pointing at ``repo_url``; False when they already exist."""
    now = ctx.now()
    async with ctx.db.write() as conn:
        await orgs.ensure(conn, DEMO_ORG, concurrency=ctx.org_concurrency, now=now)
        if await conn.scalar(sa.select(stacks_table.c.id).where(stacks_table.c.org == DEMO_ORG).limit(1)):
            return False
        for project in DEMO_STACKS:
            stack_id = str(uuid.uuid4())
            await stack_rows.insert(
                conn,
                id=stack_id,
                org=DEMO_ORG,
                project=project,
                name="prod",
                tags={"demo": "true"},
                created_at=now,
                paused=False,
            )
            settings = {
                "sourceContext": {"git": {"repoUrl": repo_url, "branch": "main", "repoDir": project}},
                "operationContext": {"environmentVariables": {"DEMO_LAYER": project}},
            }
            await stack_rows.save_settings(conn, stack_id, settings, now)
            payload = {"organization": DEMO_ORG, "projectName": project, "stackName": "prod"}
            await events.append(conn, org=DEMO_ORG, kind="stack_created", payload=payload, now=now, stack_id=stack_id)
    return True
