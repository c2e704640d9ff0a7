"""Stacks: create, read, list, delete."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from stackcascade.domain.errors import Conflict, InvalidInput, NotFound
from stackcascade.domain.names import check_stack_ref
from stackcascade.domain.roles import Principal, Role, TokenKind
from stackcascade.services import cascades
from stackcascade.services.context import Context
from stackcascade.store import cascades as cascade_rows
from stackcascade.store import deployments, events, orgs
from stackcascade.store import graph_order as graph_order_rows
from stackcascade.store import stacks as stack_rows

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection

MAX_TAGS = 100


def ref(org: str, project: str, stack: str) -> str:
    return f"{org}/{project}/{stack}"


async def load(conn: AsyncConnection, org: str, project: str, stack: str) -> Any:
    row = await stack_rows.find(conn, org, project, stack)
    if row is None:
        raise NotFound(f"stack {ref(org, project, stack)} not found")
    return row


def _check_tags(tags: object) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise InvalidInput("tags must be an object of name: value strings")
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"a stack may have at most {MAX_TAGS} tags")
    for name, value in tags.items():
        if not name or len(name) > 40 or not isinstance(value, str) or len(value) > 256:
            raise InvalidInput(f"tag {name!r}: names are 1-40 characters and values strings of at most 256")
    return dict(tags)


async def ensure_org(ctx: Context, conn: AsyncConnection, org: str) -> None:
    """Create the org row on first use (idempotent, also under concurrent first uses)."""
    await orgs.ensure(conn, org, concurrency=ctx.org_concurrency, now=ctx.now())


def stack_event_payload(org: str, project: str, stack: str) -> dict[str, Any]:
    return {"organization": org, "projectName": project, "stackName": stack}


async def create(ctx: Context, principal: Principal, org: str, project: str, body: dict[str, Any]) -> Any:
    name = body.get("stackName")
    if name is None:
        raise InvalidInput("'stackName' is required")
    org, project, name = check_stack_ref(org, project, name)
    principal.require(org, Role.MEMBER, f"organization {org!r}")
    tags = _check_tags(body.get("tags"))
    now = ctx.now()
    try:
        async with ctx.db.write() as conn:
            await ensure_org(ctx, conn, org)
            if await stack_rows.find(conn, org, project, name) is not None:
                raise Conflict(f"stack {ref(org, project, name)} already exists")
            stack_id = str(uuid.uuid4())
            await stack_rows.insert(
                conn,
                id=stack_id,
                org=org,
                project=project,
                name=name,
                tags=tags,
                outputs=None,
                paused=False,
                created_at=now,
                graph_order=await graph_order_rows.next_order(conn, org),
            )
            await events.append(
                conn,
                org=org,
                kind="stack_created",
                payload=stack_event_payload(org, project, name),
                now=now,
                stack_id=stack_id,
            )
            return await stack_rows.find(conn, org, project, name)
    except IntegrityError:
        raise Conflict(f"stack {ref(org, project, name)} already exists") from None


async def get(ctx: Context, principal: Principal, org: str, project: str, stack: str) -> tuple[Any, str | None]:
    principal.require(org, Role.VIEWER, f"stack {ref(org, project, stack)}")
    async with ctx.db.read() as conn:
        row = await load(conn, org, project, stack)
        return row, await deployments.latest_id(conn, row.id)


async def project_exists(ctx: Context, principal: Principal, org: str, project: str) -> bool:
    principal.require(org, Role.VIEWER, f"project {org}/{project}")
    async with ctx.db.read() as conn:
        return await stack_rows.project_exists(conn, org, project)


async def delete(ctx: Context, principal: Principal, org: str, project: str, stack: str) -> None:
    principal.require(org, Role.MEMBER, f"stack {ref(org, project, stack)}")
    now = ctx.now()
    async with ctx.db.write() as conn:
        row = await load(conn, org, project, stack)
        running = f"stack {ref(org, project, stack)} has a deployment running: cancel it or wait, then delete"
        # Locked before any cascade's lock: a finish holds its deployment's row while it waits for its
        # cascade's, so the other order could deadlock. No claim can start what is locked here.
        if await deployments.lock_live(conn, row.id):
            raise Conflict(running)
        # Its queued deployments go with it: the cascades they belong to must not wait for them forever.
        ended = await cascade_rows.end_members_of_deleted_stack(conn, row.id, now)
        # A cascade's finish may have queued one more while this waited for the cascade's lock; a claim may
        # even have taken it. Locked and looked at again, so no running deployment is deleted.
        if await deployments.lock_live(conn, row.id):
            raise Conflict(running)
        await stack_rows.delete(conn, row.id)
        queued = False
        for cascade_id in ended:
            queued |= await cascades.advance_in(conn, cascade_id, now)
        await events.append(
            conn,
            org=org,
            kind="stack_deleted",
            payload=stack_event_payload(org, project, stack),
            now=now,
            stack_id=row.id,
        )
    if queued:
        ctx.work.notify()


async def list_stacks(
    ctx: Context,
    principal: Principal,
    *,
    org: str | None,
    project: str | None,
    tag_name: str | None,
    tag_value: str | None,
    continuation: str | None,
    max_results: int,
) -> tuple[list[Any], str | None]:
    if org is not None:
        principal.require(org, Role.VIEWER, f"organization {org!r}")
        visible: list[str] | None = [org]
    elif principal.is_admin:
        visible = None
    elif principal.kind is TokenKind.ORG and principal.org:
        visible = [principal.org]
    else:  # runner and deployment tokens may not browse stacks (design section 7)
        raise NotFound("no stacks are visible to this token")
    after = None
    if continuation:
        after = stack_rows.decode_cursor(continuation)
        if after is None:
            raise InvalidInput("continuationToken is not one this server returned")
    if tag_value is not None and tag_name is None:
        raise InvalidInput("tagValue needs tagName")
    async with ctx.db.read() as conn:
        return await stack_rows.list_page(
            conn,
            orgs=visible,
            project=project,
            tag=(tag_name, tag_value) if tag_name else None,
            after=after,
            limit=max_results,
        )
