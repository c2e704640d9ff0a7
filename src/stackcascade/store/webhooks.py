"""Webhook rows, the deployment graph they define, and the delivery work list.

Delivery work follows the queue pattern of deployments: due rows are claimed with
``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite writers are serialised anyway) and leased by moving
``next_attempt_at`` past the lease, so a crashed dispatcher's work comes due again by itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackcascade.store.orgs import graph_changed
from stackcascade.store.schema import (
    events,
    orgs,
    stacks,
    webhook_attempts,
    webhook_deliveries,
    webhook_firings,
    webhooks,
)

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection

ORG_SCOPE = ""  # the ``scope`` of organization webhooks
PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"

_target = stacks.alias("target")


def _with_target() -> sa.Select[Any]:
    """Webhooks with the names of their stack and deployment target (both NULL when absent)."""
    source = stacks.alias("source")
    return (
        sa.select(
            webhooks,
            source.c.project.label("project"),
            source.c.name.label("stack"),
            _target.c.project.label("target_project"),
            _target.c.name.label("target_stack"),
        )
        .outerjoin(source, source.c.id == webhooks.c.stack_id)
        .outerjoin(_target, _target.c.id == webhooks.c.target_stack_id)
    )


# Built once: creating an edge runs these, and building a select with two aliases costs more than
# the database takes to answer it.
_INSERT = webhooks.insert()
_FIND = _with_target().where(
    webhooks.c.org == sa.bindparam("b_org"),
    webhooks.c.scope == sa.bindparam("b_scope"),
    webhooks.c.name == sa.bindparam("b_name"),
)
_NAME_TAKEN = sa.select(webhooks.c.id).where(
    webhooks.c.org == sa.bindparam("b_org"),
    webhooks.c.scope == sa.bindparam("b_scope"),
    webhooks.c.name == sa.bindparam("b_name"),
)
_LOCK_GRAPH = sa.select(orgs.c.name).where(orgs.c.name == sa.bindparam("b_org")).with_for_update()


async def insert(conn: AsyncConnection, **values: Any) -> None:
    if values.get("stack_id") is not None:  # organization webhooks are no part of the deployment graph
        await graph_changed(conn, values["org"], values["stack_id"])
    await conn.execute(_INSERT, values)


async def find(conn: AsyncConnection, org: str, scope: str, name: str) -> sa.Row[Any] | None:
    return (await conn.execute(_FIND, {"b_org": org, "b_scope": scope, "b_name": name})).first()


async def name_taken(conn: AsyncConnection, org: str, scope: str, name: str) -> bool:
    return (await conn.scalar(_NAME_TAKEN, {"b_org": org, "b_scope": scope, "b_name": name})) is not None


async def list_scope(conn: AsyncConnection, org: str, scope: str) -> list[sa.Row[Any]]:
    query = (
        _with_target()
        .where(webhooks.c.org == org, webhooks.c.scope == scope)
        .order_by(webhooks.c.created_at, webhooks.c.name)
    )
    return list((await conn.execute(query)).all())


async def edge_carriers(conn: AsyncConnection, org: str, scope: str, target_stack_id: str) -> list[sa.Row[Any]]:
    """The webhooks of ``scope`` whose target is that stack (``list_scope``'s rows, without the others)."""
    query = (
        _with_target()
        .where(webhooks.c.org == org, webhooks.c.scope == scope, webhooks.c.target_stack_id == target_stack_id)
        .order_by(webhooks.c.created_at, webhooks.c.name)
    )
    return list((await conn.execute(query)).all())


_OWNER = sa.select(webhooks.c.org, webhooks.c.stack_id).where(webhooks.c.id == sa.bindparam("b_id"))


async def _graph_changes_with(conn: AsyncConnection, webhook_id: str) -> None:
    """Log the change a stack webhook's update or deletion makes to its org's graph (before making it)."""
    owner = (await conn.execute(_OWNER, {"b_id": webhook_id})).first()
    if owner is not None and owner.stack_id is not None:
        await graph_changed(conn, owner.org, owner.stack_id)


async def update(conn: AsyncConnection, webhook_id: str, **values: Any) -> None:
    await _graph_changes_with(conn, webhook_id)
    await conn.execute(webhooks.update().where(webhooks.c.id == webhook_id).values(**values))


async def delete(conn: AsyncConnection, webhook_id: str) -> None:
    await _graph_changes_with(conn, webhook_id)
    await conn.execute(webhooks.delete().where(webhooks.c.id == webhook_id))


async def lock_graph(conn: AsyncConnection, org: str) -> None:
    """Serialise changes to an org's deployment graph, so two writers cannot close a cycle together.

    PostgreSQL: a row lock on the org. SQLite: writers already hold the database's write lock.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(_LOCK_GRAPH, {"b_org": org})


def stack_ref_of(table: Any) -> Any:
    return table.c.project + "/" + table.c.name


async def edges(conn: AsyncConnection, org: str) -> list[tuple[str, str, str]]:
    """The org's deployment graph: (webhook id, "project/stack" upstream, downstream), active edges only."""
    source = stacks.alias("source")
    query = (
        sa.select(webhooks.c.id, stack_ref_of(source), stack_ref_of(_target))
        .join(source, source.c.id == webhooks.c.stack_id)
        .join(_target, _target.c.id == webhooks.c.target_stack_id)
        .where(webhooks.c.org == org, webhooks.c.active.is_(True))
    )
    return [(row[0], row[1], row[2]) for row in (await conn.execute(query)).all()]


# The dispatcher's statements run for every batch of events: they are built once, with bind parameters.
_FOR_ORG_EVENTS = _with_target().where(
    webhooks.c.active.is_(True),
    webhooks.c.org.in_(sa.bindparam("b_orgs", expanding=True)),
    webhooks.c.scope == ORG_SCOPE,
)
_FOR_EVENTS = _with_target().where(
    webhooks.c.active.is_(True),
    sa.or_(
        sa.and_(webhooks.c.org.in_(sa.bindparam("b_orgs", expanding=True)), webhooks.c.scope == ORG_SCOPE),
        webhooks.c.stack_id.in_(sa.bindparam("b_stack_ids", expanding=True)),
    ),
)


async def for_events(conn: AsyncConnection, pairs: set[tuple[str, str | None]]) -> list[sa.Row[Any]]:
    """Active webhooks that may want events of these (org, stack id) pairs: the orgs' and the stacks'."""
    org_names = sorted({org for org, _ in pairs})
    stack_ids = sorted({stack_id for _, stack_id in pairs if stack_id})
    if not stack_ids:
        return list((await conn.execute(_FOR_ORG_EVENTS, {"b_orgs": org_names})).all())
    params = {"b_orgs": org_names, "b_stack_ids": stack_ids}
    return list((await conn.execute(_FOR_EVENTS, params)).all())


# --- the outbox, as the dispatcher reads it ---------------------------------------------------------

_UNDISPATCHED = (
    sa.select(events)
    .where(events.c.dispatched.is_(False))
    .order_by(events.c.id)
    .limit(sa.bindparam("b_limit", type_=sa.Integer))
    .with_for_update(skip_locked=True)
)
_MARK_DISPATCHED = events.update().where(events.c.id.in_(sa.bindparam("b_ids", expanding=True))).values(dispatched=True)


async def undispatched_events(conn: AsyncConnection, limit: int) -> list[sa.Row[Any]]:
    return list((await conn.execute(_UNDISPATCHED, {"b_limit": limit})).all())


async def mark_dispatched(conn: AsyncConnection, event_ids: list[int]) -> None:
    await conn.execute(_MARK_DISPATCHED, {"b_ids": event_ids})


async def claim_firing(conn: AsyncConnection, webhook_id: str, source: str, now: float) -> bool:
    """Record that ``source`` fired this edge; False when it already had (at most once per edge)."""
    values = {"webhook_id": webhook_id, "source": source, "created_at": now}
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement: Any = pg_insert(webhook_firings).values(values).on_conflict_do_nothing()
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(webhook_firings).values(values).on_conflict_do_nothing()
    result = await conn.execute(statement.returning(webhook_firings.c.webhook_id))
    return result.first() is not None


async def set_firing_deployment(conn: AsyncConnection, webhook_id: str, source: str, deployment_id: str) -> None:
    await conn.execute(
        webhook_firings.update()
        .where(webhook_firings.c.webhook_id == webhook_id, webhook_firings.c.source == source)
        .values(deployment_id=deployment_id)
    )


# --- deliveries and attempts --------------------------------------------------------------------------


async def insert_deliveries(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(webhook_deliveries.insert(), rows)


_DUE = (
    sa.select(webhook_deliveries.c.id)
    .where(webhook_deliveries.c.status == PENDING, webhook_deliveries.c.next_attempt_at <= sa.bindparam("b_now"))
    .order_by(webhook_deliveries.c.next_attempt_at)
    .limit(sa.bindparam("b_limit", type_=sa.Integer))
    .with_for_update(skip_locked=True)
)
_LEASE_DUE = (
    webhook_deliveries.update()
    .where(webhook_deliveries.c.id.in_(sa.bindparam("b_ids", expanding=True)))
    .values(next_attempt_at=sa.bindparam("b_until"))
)
_CLAIMED = (
    sa.select(
        webhook_deliveries,
        webhooks.c.payload_url,
        webhooks.c.secret,
        webhooks.c.active,
        webhooks.c.format,
    )
    .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
    .where(webhook_deliveries.c.id.in_(sa.bindparam("b_ids", expanding=True)))
)


async def claim_due(conn: AsyncConnection, *, now: float, limit: int, lease_seconds: float) -> list[sa.Row[Any]]:
    """Lease up to ``limit`` due deliveries: their next attempt moves past the lease while they are sent."""
    ids = [row[0] for row in (await conn.execute(_DUE, {"b_now": now, "b_limit": limit})).all()]
    if not ids:
        return []
    await conn.execute(_LEASE_DUE, {"b_ids": ids, "b_until": now + lease_seconds})
    return list((await conn.execute(_CLAIMED, {"b_ids": ids})).all())


_MOVE_ON = (
    webhook_deliveries.update()
    .where(webhook_deliveries.c.id == sa.bindparam("delivery_id"))
    .values(
        status=sa.bindparam("new_status"),
        attempts=sa.bindparam("new_attempts"),
        next_attempt_at=sa.bindparam("new_next_attempt_at"),
        finished_at=sa.bindparam("new_finished_at"),
    )
)


async def update_deliveries(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Set status, attempts, next_attempt_at and finished_at of many deliveries in one executemany.

    Each row: ``delivery_id``, ``status``, ``attempts``, ``next_attempt_at``, ``finished_at``.
    """
    if rows:
        params = [
            {
                "delivery_id": row["delivery_id"],
                "new_status": row["status"],
                "new_attempts": row["attempts"],
                "new_next_attempt_at": row["next_attempt_at"],
                "new_finished_at": row["finished_at"],
            }
            for row in rows
        ]
        await conn.execute(_MOVE_ON, params)


async def insert_attempts(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(webhook_attempts.insert(), rows)


def _attempts_with_delivery() -> sa.Select[Any]:
    return sa.select(
        webhook_attempts,
        webhook_deliveries.c.event,
        webhook_deliveries.c.kind,
        webhook_deliveries.c.body,
        webhook_deliveries.c.status,
        webhook_deliveries.c.attempts,
        webhook_deliveries.c.next_attempt_at,
    ).join(webhook_deliveries, webhook_deliveries.c.id == webhook_attempts.c.delivery_id)


async def attempts_page(
    conn: AsyncConnection, webhook_id: str, *, limit: int, before_seq: int | None
) -> list[sa.Row[Any]]:
    """Attempts of a webhook, newest first; ``before_seq`` continues a previous page."""
    query = _attempts_with_delivery().where(webhook_attempts.c.webhook_id == webhook_id)
    if before_seq is not None:
        query = query.where(webhook_attempts.c.seq < before_seq)
    return list((await conn.execute(query.order_by(webhook_attempts.c.seq.desc()).limit(limit))).all())


async def attempt(conn: AsyncConnection, attempt_id: str) -> sa.Row[Any] | None:
    return (await conn.execute(_attempts_with_delivery().where(webhook_attempts.c.id == attempt_id))).first()


async def delivery_of(conn: AsyncConnection, webhook_id: str, identifier: str) -> sa.Row[Any] | None:
    """A delivery of this webhook, named by its own id or by the id of one of its attempts."""
    by_attempt = sa.select(webhook_attempts.c.delivery_id).where(webhook_attempts.c.id == identifier)
    query = sa.select(webhook_deliveries).where(
        webhook_deliveries.c.webhook_id == webhook_id,
        sa.or_(webhook_deliveries.c.id == identifier, webhook_deliveries.c.id.in_(by_attempt)),
    )
    return (await conn.execute(query)).first()


def _upstream_outputs() -> sa.Select[Any]:
    source = stacks.alias("source")
    return (
        sa.select(webhooks.c.target_stack_id, source.c.project, source.c.name, source.c.outputs)
        .join(webhooks, webhooks.c.stack_id == source.c.id)
        .where(webhooks.c.target_stack_id.in_(sa.bindparam("b_stack_ids", expanding=True)))
        .where(webhooks.c.active.is_(True))
        .distinct()
        .order_by(webhooks.c.target_stack_id, source.c.project, source.c.name)
    )


_UPSTREAM_OUTPUTS = _upstream_outputs()  # read at every claim: built once


async def upstream_outputs(conn: AsyncConnection, stack_id: str) -> list[sa.Row[Any]]:
    """The current (sealed) outputs of every direct upstream of a stack in the deployment graph."""
    return (await upstream_outputs_of(conn, [stack_id])).get(stack_id, [])


async def upstream_outputs_of(conn: AsyncConnection, stack_ids: list[str]) -> dict[str, list[sa.Row[Any]]]:
    """``upstream_outputs`` of several stacks in one query, by stack id (a stack without upstreams is absent)."""
    found: dict[str, list[sa.Row[Any]]] = {}
    for row in (await conn.execute(_UPSTREAM_OUTPUTS, {"b_stack_ids": stack_ids})).all():
        found.setdefault(row.target_stack_id, []).append(row)
    return found


# --- Auto Deploy declarations -------------------------------------------------------------------------


async def deployment_webhooks(conn: AsyncConnection, org: str) -> list[sa.Row[Any]]:
    """Every ``pulumi_deployments`` webhook of the org (managed or not, active or not), with both ends."""
    source = stacks.alias("source")
    query = (
        sa.select(
            webhooks.c.id,
            webhooks.c.name,
            webhooks.c.scope,
            webhooks.c.stack_id,
            webhooks.c.managed,
            webhooks.c.active,
            webhooks.c.trigger_on,
            webhooks.c.require_approval,
            webhooks.c.filters,
            webhooks.c.groups,
            webhooks.c.display_name,
            webhooks.c.modified_at,
            stack_ref_of(source).label("upstream"),
            stack_ref_of(_target).label("downstream"),
        )
        .join(source, source.c.id == webhooks.c.stack_id)
        .join(_target, _target.c.id == webhooks.c.target_stack_id)
        .where(webhooks.c.org == org, webhooks.c.format == "pulumi_deployments")
        .order_by(source.c.project, source.c.name, webhooks.c.name)
    )
    return list((await conn.execute(query)).all())


async def stack_webhook_names(conn: AsyncConnection, org: str) -> list[tuple[str, str]]:
    """(scope, name) of every stack webhook of the org: managed names must not collide with them."""
    query = sa.select(webhooks.c.scope, webhooks.c.name).where(webhooks.c.org == org, webhooks.c.scope != ORG_SCOPE)
    return [(row[0], row[1]) for row in (await conn.execute(query)).all()]


async def org_stacks(conn: AsyncConnection, org: str) -> list[sa.Row[Any]]:
    """Every stack of the org: id, "project/stack" ref and its approval gate."""
    query = (
        sa.select(stacks.c.id, stack_ref_of(stacks).label("ref"), stacks.c.require_approval)
        .where(stacks.c.org == org)
        .order_by(stacks.c.project, stacks.c.name)
    )
    return list((await conn.execute(query)).all())
