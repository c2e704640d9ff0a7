"""Read models for the console: an org's stacks with their newest deployment, in a few queries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackcascade.store.schema import cascade_members, cascades, deployments, events, orgs, stacks

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection

_ACTIVE = ("not-started", "accepted", "running")


async def org_names(conn: AsyncConnection, only: str | None = None) -> list[str]:
    """Every organization (or just ``only`` when it exists), by name."""
    query = sa.select(orgs.c.name).order_by(orgs.c.name)
    if only is not None:
        query = query.where(orgs.c.name == only)
    return [str(row[0]) for row in (await conn.execute(query)).all()]


async def org_row(conn: AsyncConnection, org: str) -> sa.Row[Any] | None:
    return (await conn.execute(sa.select(orgs).where(orgs.c.name == org))).first()


async def stacks_with_latest(conn: AsyncConnection, org: str) -> list[sa.Row[Any]]:
    """The org's stacks with their newest deployment's id, version, operation, status and times."""
    newest = (
        sa.select(deployments.c.stack_id, sa.func.max(deployments.c.seq).label("seq"))
        .where(deployments.c.org == org)
        .group_by(deployments.c.stack_id)
        .subquery()
    )
    latest = deployments.alias("latest")
    query = (
        sa.select(
            stacks.c.id,
            stacks.c.project,
            stacks.c.name,
            stacks.c.tags,
            stacks.c.paused,
            stacks.c.require_approval,
            stacks.c.outputs_updated_at,
            latest.c.id.label("deployment_id"),
            latest.c.version.label("deployment_version"),
            latest.c.operation.label("deployment_operation"),
            latest.c.status.label("deployment_status"),
            latest.c.reason.label("deployment_reason"),
            latest.c.created_at.label("deployment_created_at"),
            latest.c.finished_at.label("deployment_finished_at"),
        )
        .select_from(
            stacks.outerjoin(newest, newest.c.stack_id == stacks.c.id).outerjoin(latest, latest.c.seq == newest.c.seq)
        )
        .where(stacks.c.org == org)
        .order_by(stacks.c.project, stacks.c.name)
    )
    return list((await conn.execute(query)).all())


async def active_counts(conn: AsyncConnection, org: str) -> dict[str, dict[str, int]]:
    """Queued and running deployments per stack id: ``{stack_id: {status: n}}``."""
    query = (
        sa.select(deployments.c.stack_id, deployments.c.status, sa.func.count())
        .where(deployments.c.org == org, deployments.c.status.in_(_ACTIVE))
        .group_by(deployments.c.stack_id, deployments.c.status)
    )
    counts: dict[str, dict[str, int]] = {}
    for stack_id, status, n in (await conn.execute(query)).all():
        counts.setdefault(stack_id, {})[status] = int(n)
    return counts


async def latest_event_id(conn: AsyncConnection, org: str) -> int:
    return int(await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0)).where(events.c.org == org)))


async def events_after(conn: AsyncConnection, org: str, after: int, limit: int) -> list[sa.Row[Any]]:
    query = (
        sa.select(events.c.id, events.c.kind, events.c.payload, events.c.deployment_id)
        .where(events.c.org == org, events.c.id > after)
        .order_by(events.c.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).all())


async def cascades_touched_at(conn: AsyncConnection, org: str) -> float:
    """When a member of one of the org's recent cascades last changed (approvals change no deployment)."""
    recent = sa.select(cascades.c.id).where(cascades.c.org == org).order_by(cascades.c.created_at.desc()).limit(20)
    query = sa.select(sa.func.coalesce(sa.func.max(cascade_members.c.modified_at), 0.0)).where(
        cascade_members.c.cascade_id.in_(recent.scalar_subquery())
    )
    return float(await conn.scalar(query))
