"""What the console's cascade pages show beyond ``services.cascades``: member counts and the starter."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stackcascade.domain.roles import Principal, Role
from stackcascade.services import cascades
from stackcascade.services.context import Context
from stackcascade.store import cascade_summaries as rows
from stackcascade.store import cascades as cascade_rows

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection

_ACTIVE_DEPLOYMENT = {"accepted", "running"}


@dataclass(frozen=True, slots=True)
class CascadeLine:
    """One cascade in the list, with how many of its members stand where (``running`` split from ``queued``)."""

    row: Any
    counts: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class CascadePage:
    """The list page: every running cascade (on the first page), then a page of finished ones."""

    running: list[CascadeLine]
    finished: list[CascadeLine]
    older: str | None  # the continuation token of the next page of finished cascades (None: last page)


@dataclass(frozen=True, slots=True)
class Starter:
    initiator: str
    requested_by: str
    version: int  # the root deployment's own number: a retried root member runs under another


async def page(
    ctx: Context, principal: Principal, org: str, *, limit: int = 50, continuation: str | None = None
) -> CascadePage:
    """Running cascades however old, so none awaiting an approval drops off the list; finished ones paged.

    Member counts of all of them in one grouped query."""
    finished, older = await cascades.list_cascades(
        ctx, principal, org, limit=limit, continuation=continuation, finished_only=True
    )
    async with ctx.db.read() as conn:
        running = [] if continuation is not None else await cascade_rows.running_of_org(conn, org)
        lines = await _counted(conn, [*running, *finished])
    return CascadePage(lines[: len(running)], lines[len(running) :], older)


async def _counted(conn: AsyncConnection, listed: list[Any]) -> list[CascadeLine]:
    counted = await rows.member_counts(conn, [row.id for row in listed])
    counts: dict[str, Counter[str]] = {row.id: Counter() for row in listed}
    for line in counted:
        status = line.status
        if status == "queued" and line.deployment_status in _ACTIVE_DEPLOYMENT:
            status = "running"
        counts[line.cascade_id][status] += int(line.n)
    return [CascadeLine(row, counts[row.id]) for row in listed]


async def starter(ctx: Context, principal: Principal, org: str, deployment_id: str | None) -> Starter | None:
    """Who asked for the root deployment, and its number; None for an external event or a deployment since
    deleted."""
    principal.require(org, Role.VIEWER, f"organization {org}")
    if deployment_id is None:
        return None
    async with ctx.db.read() as conn:
        row = await rows.requester(conn, org, deployment_id)
    return None if row is None else Starter(str(row.initiator), str(row.requested_by), int(row.version))
