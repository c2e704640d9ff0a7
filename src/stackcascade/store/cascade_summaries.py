"""Read models for the console's cascade pages: member counts per cascade and who started one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackcascade.store.schema import cascade_members, deployments

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection


async def member_counts(conn: AsyncConnection, cascade_ids: list[str]) -> list[sa.Row[Any]]:
    """``(cascade_id, status, deployment_status, n)`` for the given cascades, in one grouped query."""
    if not cascade_ids:
        return []
    query = (
        sa.select(
            cascade_members.c.cascade_id,
            cascade_members.c.status,
            deployments.c.status.label("deployment_status"),
            sa.func.count().label("n"),
        )
        .outerjoin(deployments, deployments.c.id == cascade_members.c.deployment_id)
        .where(cascade_members.c.cascade_id.in_(cascade_ids))
        .group_by(cascade_members.c.cascade_id, cascade_members.c.status, deployments.c.status)
    )
    return list((await conn.execute(query)).all())


async def requester(conn: AsyncConnection, org: str, deployment_id: str) -> sa.Row[Any] | None:
    """How a deployment was asked for (``initiator``, ``requested_by``) and its ``version``, or None once it is
    gone."""
    query = sa.select(deployments.c.initiator, deployments.c.requested_by, deployments.c.version).where(
        deployments.c.id == deployment_id, deployments.c.org == org
    )
    return (await conn.execute(query)).first()
