"""What the console's org overview shows: every stack with its newest deployment and queue."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stackcascade.domain.errors import NotFound
from stackcascade.domain.roles import Principal, Role, TokenKind
from stackcascade.services.context import Context
from stackcascade.store import overview as rows


@dataclass(frozen=True, slots=True)
class StackLine:
    project: str
    name: str
    tags: dict[str, str]
    paused: bool
    require_approval: bool
    outputs_updated_at: float | None
    deployment_id: str | None
    deployment_version: int | None
    deployment_operation: str | None
    deployment_status: str | None
    deployment_reason: str | None
    deployment_at: float | None
    running: int
    queued: int

    @property
    def ref(self) -> str:
        return f"{self.project}/{self.name}"


@dataclass(frozen=True, slots=True)
class OrgOverview:
    org: str
    paused: bool
    concurrency: int
    cascade_mode: str
    stacks: list[StackLine] = field(default_factory=list)

    @property
    def running(self) -> int:
        return sum(s.running for s in self.stacks)

    @property
    def queued(self) -> int:
        return sum(s.queued for s in self.stacks)


async def visible_orgs(ctx: Context, principal: Principal) -> list[str]:
    """The organizations this caller may look at: all for an admin, its own for an org token."""
    if principal.kind is TokenKind.ORG and principal.org:
        only: str | None = principal.org
    elif principal.is_admin:
        only = None
    else:
        return []
    async with ctx.db.read() as conn:
        return await rows.org_names(conn, only)


async def org_overview(ctx: Context, principal: Principal, org: str) -> OrgOverview:
    principal.require(org, Role.VIEWER, f"organization {org!r}")
    async with ctx.db.read() as conn:
        org_row = await rows.org_row(conn, org)
        if org_row is None:
            raise NotFound(f"organization {org!r} not found")
        stacks = await rows.stacks_with_latest(conn, org)
        counts = await rows.active_counts(conn, org)
    return OrgOverview(
        org=org,
        paused=bool(org_row.paused),
        concurrency=int(org_row.concurrency),
        cascade_mode=str(org_row.cascade_mode),
        stacks=[_line(row, counts.get(row.id, {})) for row in stacks],
    )


def _line(row: Any, counts: dict[str, int]) -> StackLine:
    return StackLine(
        project=row.project,
        name=row.name,
        tags=dict(row.tags or {}),
        paused=bool(row.paused),
        require_approval=bool(row.require_approval),
        outputs_updated_at=row.outputs_updated_at,
        deployment_id=row.deployment_id,
        deployment_version=row.deployment_version,
        deployment_operation=row.deployment_operation,
        deployment_status=row.deployment_status,
        deployment_reason=row.deployment_reason,
        deployment_at=row.deployment_finished_at or row.deployment_created_at,
        running=counts.get("running", 0) + counts.get("accepted", 0),
        queued=counts.get("not-started", 0),
    )


@dataclass(frozen=True, slots=True)
class Change:
    """Something that happened in an org, as much as a console page needs to refresh itself."""

    id: int
    kind: str
    stack: str | None
    deployment_id: str | None
    status: str | None
    cascade_id: str | None


@dataclass(frozen=True, slots=True)
class Cursor:
    event_id: int
    cascades_at: float


async def live_cursor(ctx: Context, principal: Principal, org: str) -> Cursor:
    principal.require(org, Role.VIEWER, f"organization {org!r}")
    async with ctx.db.read() as conn:
        if await rows.org_row(conn, org) is None:  # a typo must not stream an empty org's silence
            raise NotFound(f"organization {org!r} not found")
        return Cursor(await rows.latest_event_id(conn, org), await rows.cascades_touched_at(conn, org))


async def changes_since(ctx: Context, org: str, cursor: Cursor, limit: int = 200) -> tuple[list[Change], Cursor]:
    """Events after the cursor and whether a cascade member moved; the new cursor.

    The caller checked access when it took its first cursor (``live_cursor``).
    """
    async with ctx.db.read() as conn:
        found = await rows.events_after(conn, org, cursor.event_id, limit)
        touched = await rows.cascades_touched_at(conn, org)
    changes = [_change(row) for row in found]
    event_id = changes[-1].id if changes else cursor.event_id
    return changes, Cursor(event_id, max(touched, cursor.cascades_at))


def _change(row: Any) -> Change:
    payload = row.payload if isinstance(row.payload, dict) else {}
    stack = payload.get("stack") if isinstance(payload.get("stack"), dict) else payload
    project, name = stack.get("projectName"), stack.get("stackName")
    return Change(
        id=int(row.id),
        kind=str(row.kind),
        stack=f"{project}/{name}" if project and name else None,
        deployment_id=row.deployment_id or payload.get("deploymentId"),
        status=payload.get("status"),
        cascade_id=payload.get("cascadeId"),
    )
