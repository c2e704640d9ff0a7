"""What the console's cascade pages show beyond ``services.cascades``: member counts and the starter."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from stackcascade.domain.roles import Principal, Role
from stackcascade.services import cascades
from stackcascade.services.context import Context
from stackcascade.store import cascade_summaries as rows

_ACTIVE_DEPLOYMENT = {"accepted", "running"}


@dataclass(frozen=True, slots=True)
class CascadeLine:
    """One cascade in the list, with how many of its members stand where (``running`` split from ``queued``)."""

    row: Any
    counts: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Starter:
    initiator: str
    requested_by: str


async def recent(ctx: Context, principal: Principal, org: str, *, limit: int = 50) -> list[CascadeLine]:
    """The org's newest cascades with member counts: two queries whatever the number of members."""
    listed, _ = await cascades.list_cascades(ctx, principal, org, limit=limit)
    async with ctx.db.read() as conn:
        counted = await rows.member_counts(conn, [row.id for row in listed])
    counts: dict[str, Counter[str]] = {row.id: Counter() for row in listed}
    for line in counted:
        status = line.status
        if status == "queued" and line.deployment_status in _ACTIVE_DEPLOYMENT:
            status = "running"
        counts[line.cascade_id][status] += int(line.n)
    return [CascadeLine(row, counts[row.id]) for row in listed]


async def starter(ctx: Context, principal: Principal, org: str, deployment_id: str | None) -> Starter | None:
    """Who asked for the root deployment; None for an external event or a deployment since deleted."""
    principal.require(org, Role.VIEWER, f"organization {org}")
    if deployment_id is None:
        return None
    async with ctx.db.read() as conn:
        row = await rows.requester(conn, org, deployment_id)
    return None if row is None else Starter(str(row.initiator), str(row.requested_by))
