"""The demo organization of design section 1: network -> {database, cluster} -> app."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from stackcascade.services.context import Context
from stackcascade.store import events, orgs
from stackcascade.store import stacks as stack_rows
from stackcascade.store import webhooks as webhook_rows
from stackcascade.store.schema import stacks as stacks_table

DEMO_ORG = "demo"
DEMO_STACKS = ("network", "database", "cluster", "app")
DEMO_EDGES = (("network", "database"), ("network", "cluster"), ("database", "app"), ("cluster", "app"))


async def seed(ctx: Context, repo_url: str) -> bool:
    """Create the demo stacks with settings pointing at ``repo_url`` and the diamond's deployment edges;
    False when they already exist."""
    now = ctx.now()
    async with ctx.db.write() as conn:
        await orgs.ensure(conn, DEMO_ORG, concurrency=ctx.org_concurrency, now=now)
        if await conn.scalar(sa.select(stacks_table.c.id).where(stacks_table.c.org == DEMO_ORG).limit(1)):
            return False
        ids: dict[str, str] = {}
        for project in DEMO_STACKS:
            stack_id = ids[project] = str(uuid.uuid4())
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
        for upstream, downstream in DEMO_EDGES:  # the deployment graph: a change to network cascades
            await webhook_rows.insert(
                conn,
                id=str(uuid.uuid4()),
                org=DEMO_ORG,
                stack_id=ids[upstream],
                scope=ids[upstream],
                name=f"deploy-{downstream}",
                display_name=f"deploy-{downstream}",
                payload_url=f"{downstream}/prod",
                format="pulumi_deployments",
                filters=["update_succeeded"],
                groups=[],
                active=True,
                target_stack_id=ids[downstream],
                created_at=now,
                modified_at=now,
            )
    return True
