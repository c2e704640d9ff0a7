"""Stack rows and their deployment settings."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackcascade.store.orgs import graph_changed
from stackcascade.store.schema import deployment_settings, stacks, webhooks

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection


_FIND = sa.select(stacks).where(
    stacks.c.org == sa.bindparam("b_org"),
    stacks.c.project == sa.bindparam("b_project"),
    stacks.c.name == sa.bindparam("b_name"),
)


async def find(conn: AsyncConnection, org: str, project: str, name: str) -> sa.Row[Any] | None:
    return (await conn.execute(_FIND, {"b_org": org, "b_project": project, "b_name": name})).first()


def _with_settings() -> sa.Select[Any]:
    return sa.select(stacks, deployment_settings.c.document.label("settings_document")).outerjoin(
        deployment_settings, deployment_settings.c.stack_id == stacks.c.id
    )


# Built once with bind parameters: building a select anew costs more than SQLite takes to run it.
_FIND_WITH_SETTINGS = _with_settings().where(
    stacks.c.org == sa.bindparam("b_org"),
    stacks.c.project == sa.bindparam("b_project"),
    stacks.c.name == sa.bindparam("b_name"),
)
_NEXT_VERSION = (
    stacks.update()
    .where(stacks.c.id == sa.bindparam("b_id"))
    .values(last_version=stacks.c.last_version + 1)
    .returning(stacks.c.last_version)
)


async def find_with_settings(conn: AsyncConnection, org: str, project: str, name: str) -> sa.Row[Any] | None:
    """The stack and its saved settings document (None when it has none), in one query."""
    params = {"b_org": org, "b_project": project, "b_name": name}
    return (await conn.execute(_FIND_WITH_SETTINGS, params)).first()


_GET_WITH_SETTINGS = _with_settings().where(stacks.c.id == sa.bindparam("b_id"))


async def get_with_settings(conn: AsyncConnection, stack_id: str) -> sa.Row[Any] | None:
    return (await conn.execute(_GET_WITH_SETTINGS, {"b_id": stack_id})).first()


_GET_MANY_WITH_SETTINGS = _with_settings().where(stacks.c.id.in_(sa.bindparam("b_ids", expanding=True)))


async def get_many_with_settings(conn: AsyncConnection, stack_ids: list[str]) -> dict[str, sa.Row[Any]]:
    """The stacks (with their saved settings) that still exist, by id."""
    if not stack_ids:
        return {}
    return {row.id: row for row in (await conn.execute(_GET_MANY_WITH_SETTINGS, {"b_ids": stack_ids})).all()}


async def insert(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(stacks.insert().values(**values))


_ORG_OF = sa.select(stacks.c.org).where(stacks.c.id == sa.bindparam("b_id"))
_UPSTREAMS_OF = (
    sa.select(webhooks.c.stack_id)
    .where(webhooks.c.target_stack_id == sa.bindparam("b_id"), webhooks.c.stack_id.is_not(None))
    .distinct()
    .order_by(webhooks.c.stack_id)
)


async def delete(conn: AsyncConnection, stack_id: str) -> None:
    """Delete the stack; its webhooks and the edges to it go with it: a change to the edges of the stack
    and of each stack with an edge to it, logged as such so held graphs catch up without a full read."""
    org = await conn.scalar(_ORG_OF, {"b_id": stack_id})
    if org is not None:
        await graph_changed(conn, org, stack_id)  # locks the org row first, as every graph change does
        for upstream in (await conn.execute(_UPSTREAMS_OF, {"b_id": stack_id})).scalars().all():
            await graph_changed(conn, org, str(upstream))
    await conn.execute(stacks.delete().where(stacks.c.id == stack_id))


async def project_exists(conn: AsyncConnection, org: str, project: str) -> bool:
    query = sa.select(stacks.c.id).where(stacks.c.org == org, stacks.c.project == project).limit(1)
    return (await conn.scalar(query)) is not None


def _encode_cursor(row: sa.Row[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps([row.org, row.project, row.name]).encode()).decode()


def decode_cursor(token: str) -> tuple[str, str, str] | None:
    try:
        org, project, name = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):
        return None
    if not all(isinstance(part, str) for part in (org, project, name)):
        return None
    return org, project, name


async def list_page(
    conn: AsyncConnection,
    *,
    orgs: list[str] | None,
    project: str | None,
    tag: tuple[str, str | None] | None,
    after: tuple[str, str, str] | None,
    limit: int,
) -> tuple[list[sa.Row[Any]], str | None]:
    """Stacks ordered by org/project/name, keyset-paged; returns the page and the next cursor."""
    query = sa.select(stacks).order_by(stacks.c.org, stacks.c.project, stacks.c.name)
    if orgs is not None:
        query = query.where(stacks.c.org.in_(orgs))
    if project is not None:
        query = query.where(stacks.c.project == project)
    if after is not None:
        query = query.where(sa.tuple_(stacks.c.org, stacks.c.project, stacks.c.name) > sa.tuple_(*after))
    rows = list((await conn.execute(query)).all()) if tag else list((await conn.execute(query.limit(limit + 1))).all())
    if tag is not None:
        name, value = tag
        rows = [r for r in rows if name in r.tags and (value is None or r.tags[name] == value)][: limit + 1]
    if len(rows) > limit:
        return rows[:limit], _encode_cursor(rows[limit - 1])
    return rows, None


async def set_paused(conn: AsyncConnection, stack_id: str, paused: bool) -> None:
    await conn.execute(stacks.update().where(stacks.c.id == stack_id).values(paused=paused))


async def next_version(conn: AsyncConnection, stack_id: str) -> int | None:
    """Take the stack's next deployment version; the row update also serialises creations per stack.
    None when the stack is gone (a deletion committed since the caller read it)."""
    taken = (await conn.execute(_NEXT_VERSION, {"b_id": stack_id})).scalar_one_or_none()
    return None if taken is None else int(taken)


# The rows are locked in the order of their ids (PostgreSQL), so that two transactions taking versions of
# the same stacks cannot each hold one the other waits for.
_IN_ID_ORDER = (
    sa.select(stacks.c.id)
    .where(stacks.c.id.in_(sa.bindparam("b_ids", expanding=True)))
    .order_by(stacks.c.id)
    .with_for_update()
)
_NEXT_VERSIONS = (
    stacks.update()
    .where(stacks.c.id.in_(_IN_ID_ORDER))
    .values(last_version=stacks.c.last_version + 1)
    .returning(stacks.c.id, stacks.c.last_version)
)


async def next_versions(conn: AsyncConnection, stack_ids: list[str]) -> dict[str, int]:
    """``next_version`` of several stacks in one statement, by id; a stack that is gone has none."""
    if len(stack_ids) == 1:
        version = await next_version(conn, stack_ids[0])
        return {} if version is None else {stack_ids[0]: version}
    return {row.id: int(row.last_version) for row in (await conn.execute(_NEXT_VERSIONS, {"b_ids": stack_ids})).all()}


async def get_settings(conn: AsyncConnection, stack_id: str) -> sa.Row[Any] | None:
    query = sa.select(deployment_settings).where(deployment_settings.c.stack_id == stack_id)
    return (await conn.execute(query)).first()


async def save_settings(conn: AsyncConnection, stack_id: str, document: dict[str, Any], now: float) -> int:
    """Store ``document`` as the stack's settings and return the new version (always increasing)."""
    version = int(
        (
            await conn.execute(
                stacks.update()
                .where(stacks.c.id == stack_id)
                .values(settings_version=stacks.c.settings_version + 1)
                .returning(stacks.c.settings_version)
            )
        ).scalar_one()
    )
    updated = await conn.execute(
        deployment_settings.update()
        .where(deployment_settings.c.stack_id == stack_id)
        .values(document=document, version=version, updated_at=now)
    )
    if not updated.rowcount:
        await conn.execute(
            deployment_settings.insert().values(stack_id=stack_id, document=document, version=version, updated_at=now)
        )
    return version


async def delete_settings(conn: AsyncConnection, stack_id: str) -> bool:
    result = await conn.execute(deployment_settings.delete().where(deployment_settings.c.stack_id == stack_id))
    return bool(result.rowcount)
