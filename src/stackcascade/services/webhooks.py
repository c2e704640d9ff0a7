"""Stack and organization webhooks: create, read, update, delete; the deployment graph they define.

A ``pulumi_deployments`` webhook on stack U with ``payloadUrl`` "project/stack" D is the deployment
edge U -> D. Every change that could add an edge locks the org's graph, re-reads it and refuses a
cycle, all in one transaction, so concurrent writers cannot close a cycle together.
"""

from __future__ import annotations

import secrets as random_source
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stackcascade.domain import graph
from stackcascade.domain.errors import Conflict, InvalidInput, NotFound
from stackcascade.domain.names import check_name, check_stack_ref
from stackcascade.domain.roles import Principal, Role
from stackcascade.domain.webhook_events import WebhookFormat, check_filters, check_groups, parse_format
from stackcascade.services import graph_order
from stackcascade.services.context import Context
from stackcascade.services.stacks import ensure_org, load, ref
from stackcascade.store import stacks as stack_rows
from stackcascade.store import webhooks as rows

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection

MAX_DISPLAY_NAME = 200
TRIGGER_ON = ("always", "outputs-changed")
_FIELDS = {
    "organizationname": "organizationName",
    "projectname": "projectName",
    "stackname": "stackName",
    "envname": "envName",
    "name": "name",
    "displayname": "displayName",
    "payloadurl": "payloadUrl",
    "secret": "secret",
    "active": "active",
    "format": "format",
    "filters": "filters",
    "groups": "groups",
    "triggeron": "triggerOn",  # extension, deployment webhooks only
    "requireapproval": "requireApproval",  # extension, deployment webhooks only
}


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a webhook lives: an organization, or one of its stacks."""

    org: str
    project: str | None = None
    stack: str | None = None

    @property
    def is_stack(self) -> bool:
        return self.stack is not None

    def describe(self) -> str:
        return f"stack {ref(self.org, self.project or '', self.stack)}" if self.is_stack else f"organization {self.org}"


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    """Known fields by their contract spelling; keys are matched case-insensitively; null = not given."""
    known: dict[str, Any] = {}
    for key, value in body.items():
        name = _FIELDS.get(str(key).lower())
        if name is None:
            raise InvalidInput(f"unknown webhook field {key!r}; known fields: {', '.join(sorted(_FIELDS.values()))}")
        if value is not None:
            known[name] = value
    return known


def _check_path_agrees(scope: Scope, fields: dict[str, Any]) -> None:
    expected = {"organizationName": scope.org, "projectName": scope.project, "stackName": scope.stack}
    for name, value in expected.items():
        given = fields.get(name)
        if given is None or given == "":
            continue
        if value is None:
            raise InvalidInput(f"{name} {given!r} is for stack webhooks; this is {scope.describe()}'s webhook list")
        if given != value:
            raise InvalidInput(f"{name} {given!r} in the body disagrees with {value!r} in the path")
    if fields.get("envName"):
        raise InvalidInput("environment webhooks are not supported: leave envName out")


def _string(fields: dict[str, Any], name: str, *, limit: int) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    if len(value) > limit or any(ord(c) < 32 for c in value):
        raise InvalidInput(f"{name} must be at most {limit} characters without control characters")
    return value


def _target_of(org: str, payload_url: str) -> tuple[str, str]:
    project, sep, stack = payload_url.partition("/")
    if not sep or "/" in stack:
        raise InvalidInput(
            f"a pulumi_deployments webhook's payloadUrl is the downstream stack as 'project/stack' in organization "
            f"{org}, got {payload_url!r}"
        )
    _, project, stack = check_stack_ref(org, project, stack)
    return project, stack


@dataclass(slots=True)
class _Draft:
    """A webhook's fields after validation, before it is written."""

    name: str
    display_name: str
    payload_url: str
    format: WebhookFormat
    filters: list[str]
    groups: list[str]
    active: bool
    secret: str | None  # ciphertext
    trigger_on: str = "always"
    require_approval: bool = False

    @property
    def is_edge(self) -> bool:
        return self.format is WebhookFormat.PULUMI_DEPLOYMENTS

    def columns(self, target_id: str | None, now: float) -> dict[str, Any]:
        """The row's columns that a create or an update writes."""
        return {
            "name": self.name,
            "display_name": self.display_name,
            "payload_url": self.payload_url,
            "format": self.format.value,
            "filters": self.filters,
            "groups": self.groups,
            "active": self.active,
            "secret": self.secret,
            "trigger_on": self.trigger_on,
            "require_approval": self.require_approval,
            "target_stack_id": target_id,
            "modified_at": now,
        }


def _edge_options(fields: dict[str, Any], *, current: Any) -> dict[str, Any]:
    """``triggerOn`` (always | outputs-changed) and ``requireApproval`` of a deployment edge."""
    trigger_on = fields.get("triggerOn", current.trigger_on if current is not None else "always")
    if trigger_on not in TRIGGER_ON:
        raise InvalidInput(f"triggerOn must be one of {', '.join(TRIGGER_ON)}, got {trigger_on!r}")
    approval = _bool(fields, "requireApproval", default=current.require_approval if current is not None else False)
    return {"trigger_on": trigger_on, "require_approval": approval}


async def _validate(ctx: Context, scope: Scope, draft: _Draft) -> None:
    if not draft.is_edge and (draft.trigger_on != "always" or draft.require_approval):
        raise InvalidInput("triggerOn and requireApproval are for pulumi_deployments webhooks (deployment edges)")
    if draft.is_edge:
        if not scope.is_stack:
            raise InvalidInput("format pulumi_deployments is for stack webhooks only: create it on the upstream stack")
        _target_of(scope.org, draft.payload_url)
        return
    if ctx.webhook_client is None:
        raise InvalidInput("webhook delivery is not configured on this server")
    await ctx.webhook_client.check_target(draft.payload_url)


async def _resolve_target(conn: AsyncConnection, scope: Scope, draft: _Draft) -> str | None:
    """The downstream stack id of an edge (it must exist in the same org); None for HTTP webhooks."""
    if not draft.is_edge:
        return None
    project, stack = _target_of(scope.org, draft.payload_url)
    target = await stack_rows.find(conn, scope.org, project, stack)
    if target is None:
        raise InvalidInput(
            f"pulumi_deployments payloadUrl {draft.payload_url!r}: stack {ref(scope.org, project, stack)} does not exist"
        )
    return str(target.id)


async def _refuse_cycle(
    conn: AsyncConnection, scope: Scope, draft: _Draft, webhook_id: str | None, source_id: str, target_id: str
) -> None:
    """Lock the org's graph and refuse the edge when it would close a cycle (409 with the cycle).

    The check uses the topological order kept with the stacks (``services.graph_order``), which it
    updates for the new edge; a refusal names the cycle from the stacks the check walked.
    """
    await rows.lock_graph(conn, scope.org)
    cycle = await graph_order.cycle_closed_by(conn, scope.org, source_id, target_id, exclude_webhook=webhook_id)
    if cycle is not None:
        raise Conflict(
            f"this webhook would close a cycle in the deployment graph of {scope.org}: {graph.format_cycle(cycle)}"
        )


async def _refuse_second_edge(
    conn: AsyncConnection, scope: Scope, webhook_id: str | None, scope_key: str, target_id: str
) -> None:
    """One webhook per edge, as an Auto Deploy declaration keeps it (409 naming the webhook that has it).

    A managed webhook (active or not: its declaration declares the edge) is changed only through the
    declaration, which would otherwise refuse to apply again; a second unmanaged active one would make
    per-edge mode deploy the downstream stack twice for one event. Called with the org's graph locked.
    """
    upstream = f"{scope.project}/{scope.stack}"
    for row in await rows.edge_carriers(conn, scope.org, scope_key, target_id):
        if row.id == webhook_id or row.format != WebhookFormat.PULUMI_DEPLOYMENTS.value:
            continue
        if row.target_stack_id != target_id or not (row.managed or row.active):
            continue
        downstream = f"{row.target_project}/{row.target_stack}"
        if row.managed:
            raise Conflict(
                f"the edge {upstream} -> {downstream} is managed by the org's Auto Deploy declaration (webhook "
                f"{row.name!r}): change it through the declaration (GET, edit and PUT /api/orgs/{scope.org}/autodeploy, "
                "or cascade autodeploy apply), or leave the edge out of the declaration before a webhook of your own "
                "carries it"
            )
        raise Conflict(
            f"{scope.describe()} already has an active deployment webhook {row.name!r} to {downstream}: one webhook "
            f"per edge, so one event never deploys {downstream} twice; change that webhook's filters instead, "
            "or deactivate it first"
        )


async def _scope_id(conn: AsyncConnection, scope: Scope) -> tuple[str, str | None]:
    """(scope key, stack id): the stack must exist for stack webhooks."""
    if not scope.is_stack:
        return rows.ORG_SCOPE, None
    stack = await load(conn, scope.org, scope.project or "", scope.stack or "")
    return str(stack.id), str(stack.id)


async def create(ctx: Context, principal: Principal, scope: Scope, body: dict[str, Any]) -> Any:
    principal.require(scope.org, Role.MEMBER, scope.describe())
    fields = _fields(body)
    _check_path_agrees(scope, fields)
    name = _string(fields, "name", limit=100) or random_source.token_hex(4)
    check_name("webhook", name)
    payload_url = _string(fields, "payloadUrl", limit=2048)
    if not payload_url:
        raise InvalidInput("payloadUrl is required: the URL to POST to, or 'project/stack' for pulumi_deployments")
    draft = _Draft(
        name=name,
        display_name=_string(fields, "displayName", limit=MAX_DISPLAY_NAME) or name,
        payload_url=payload_url,
        format=parse_format(fields.get("format")),
        filters=check_filters(fields.get("filters"), stack_scoped=scope.is_stack),
        groups=check_groups(fields.get("groups")),
        active=_bool(fields, "active", default=True),
        secret=_sealed_secret(ctx, fields, current=None),
        **_edge_options(fields, current=None),
    )
    await _validate(ctx, scope, draft)
    now = ctx.now()
    webhook_id = str(uuid.uuid4())
    async with ctx.db.write() as conn:
        if not scope.is_stack:
            await ensure_org(ctx, conn, scope.org)
        scope_key, stack_id = await _scope_id(conn, scope)
        target_id = await _resolve_target(conn, scope, draft)
        if draft.is_edge and draft.active:
            await _refuse_cycle(conn, scope, draft, None, str(stack_id), str(target_id))
            await _refuse_second_edge(conn, scope, None, scope_key, str(target_id))
        if await rows.name_taken(conn, scope.org, scope_key, name):
            raise Conflict(f"{scope.describe()} already has a webhook named {name!r}")
        await rows.insert(
            conn,
            id=webhook_id,
            org=scope.org,
            stack_id=stack_id,
            scope=scope_key,
            created_at=now,
            **draft.columns(target_id, now),
        )
        return await rows.find(conn, scope.org, scope_key, name)


def _bool(fields: dict[str, Any], name: str, *, default: bool) -> bool:
    value = fields.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false")
    return value


def _sealed_secret(ctx: Context, fields: dict[str, Any], *, current: str | None) -> str | None:
    """Absent keeps the current secret; "" clears it; a string replaces it (encrypted at rest)."""
    if "secret" not in fields:
        return current
    value = fields["secret"]
    if not isinstance(value, str):
        raise InvalidInput("secret must be a string (an empty string removes it)")
    if len(value) > 1024:
        raise InvalidInput("secret must be at most 1024 characters")
    return ctx.secrets.seal(value) if value else None


async def _existing(conn: AsyncConnection, scope: Scope, name: str) -> Any:
    scope_key, _ = await _scope_id(conn, scope)
    row = await rows.find(conn, scope.org, scope_key, name)
    if row is None:
        raise NotFound(f"{scope.describe()} has no webhook named {name!r}")
    return row


def _refuse_managed(row: Any, what: str) -> None:
    if row.managed:
        raise Conflict(
            f"webhook {row.name!r} belongs to the org's Auto Deploy declaration and is {what} only through it "
            "(PUT /api/orgs/{org}/autodeploy, or cascade autodeploy apply)"
        )


async def get(ctx: Context, principal: Principal, scope: Scope, name: str) -> Any:
    principal.require(scope.org, Role.MEMBER, scope.describe())
    async with ctx.db.read() as conn:
        return await _existing(conn, scope, name)


async def list_webhooks(ctx: Context, principal: Principal, scope: Scope) -> list[Any]:
    principal.require(scope.org, Role.MEMBER, scope.describe())
    async with ctx.db.read() as conn:
        scope_key, _ = await _scope_id(conn, scope)
        return await rows.list_scope(conn, scope.org, scope_key)


async def update(ctx: Context, principal: Principal, scope: Scope, name: str, body: dict[str, Any]) -> Any:
    """PATCH: only the fields given change; the result is validated as a whole, like a create."""
    principal.require(scope.org, Role.MEMBER, scope.describe())
    fields = _fields(body)
    _check_path_agrees(scope, fields)
    async with ctx.db.read() as conn:
        current = await _existing(conn, scope, name)
    _refuse_managed(current, "changed")
    new_name = _string(fields, "name", limit=100) if "name" in fields else current.name
    check_name("webhook", new_name or "")
    format_ = parse_format(fields["format"]) if "format" in fields else WebhookFormat(current.format)
    payload_url = _string(fields, "payloadUrl", limit=2048) if "payloadUrl" in fields else current.payload_url
    if not payload_url:
        raise InvalidInput("payloadUrl may not be empty")
    if "displayName" in fields:
        display_name = _string(fields, "displayName", limit=MAX_DISPLAY_NAME) or new_name
    else:
        display_name = current.display_name
    draft = _Draft(
        name=new_name,
        display_name=display_name,
        payload_url=payload_url,
        format=format_,
        filters=check_filters(fields["filters"], stack_scoped=scope.is_stack)
        if "filters" in fields
        else list(current.filters),
        groups=check_groups(fields["groups"]) if "groups" in fields else list(current.groups),
        active=_bool(fields, "active", default=current.active),
        secret=_sealed_secret(ctx, fields, current=current.secret),
        **_edge_options(fields, current=current),
    )
    await _validate(ctx, scope, draft)
    async with ctx.db.write() as conn:
        row = await _existing(conn, scope, name)  # again, inside the transaction that changes it
        target_id = await _resolve_target(conn, scope, draft)
        if draft.is_edge and draft.active:
            await _refuse_cycle(conn, scope, draft, row.id, str(row.stack_id), str(target_id))
            await _refuse_second_edge(conn, scope, str(row.id), str(row.scope), str(target_id))
        if new_name != row.name and await rows.name_taken(conn, scope.org, row.scope, new_name):
            raise Conflict(f"{scope.describe()} already has a webhook named {new_name!r}")
        await rows.update(conn, row.id, **draft.columns(target_id, ctx.now()))
        return await rows.find(conn, scope.org, row.scope, draft.name)


async def delete(ctx: Context, principal: Principal, scope: Scope, name: str) -> None:
    principal.require(scope.org, Role.MEMBER, scope.describe())
    async with ctx.db.write() as conn:
        row = await _existing(conn, scope, name)
        _refuse_managed(row, "deleted")
        await rows.delete(conn, row.id)


async def references(ctx: Context, principal: Principal, scope: Scope, *, downstream: bool) -> list[Any]:
    """The stacks this stack's deployment edges lead to (downstream) or come from (upstream)."""
    principal.require(scope.org, Role.VIEWER, scope.describe())
    async with ctx.db.read() as conn:
        stack = await load(conn, scope.org, scope.project or "", scope.stack or "")
        node = f"{stack.project}/{stack.name}"
        edges = [(up, down) for _, up, down in await rows.edges(conn, scope.org)]
        names = graph.downstream(edges, node) if downstream else graph.upstream(edges, node)
        found = []
        for name in names:
            project, _, stack_name = name.partition("/")
            row = await stack_rows.find(conn, scope.org, project, stack_name)
            if row is not None:
                found.append(row)
        return found
