"""Webhook delivery: fan events out of the outbox, claim due deliveries, record attempts; ping, redeliver.

State changes happen here, each in one transaction; the HTTP requests are made by the injected
``ctx.webhook_client`` between the claim and the record, outside any transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from stackcascade import __version__
from stackcascade.domain import webhook_payloads as payloads
from stackcascade.domain.deployments import Operation
from stackcascade.domain.errors import CascadeError, InvalidInput, NotFound
from stackcascade.domain.roles import Principal
from stackcascade.domain.webhook_events import WebhookFormat, matches, webhook_kind
from stackcascade.services.context import Context
from stackcascade.services.queueing import FIRES_EDGES, queue_in
from stackcascade.services.webhook_client import AttemptResult, OutgoingRequest
from stackcascade.services.webhooks import Scope, get
from stackcascade.store import cascades as cascade_rows
from stackcascade.store import stacks as stack_rows
from stackcascade.store import webhooks as rows

if TYPE_CHECKING:  # only an annotation: importing SQLAlchemy's asyncio extension costs start-up time
    from sqlalchemy.ext.asyncio import AsyncConnection

MAX_RESPONSE_BODY = 16 * 1024  # stored per attempt
FAN_OUT_BATCH = 500
_USER_AGENT = f"stackcascade/{__version__}"


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A claimed delivery, ready to send: ``request`` carries the signature, never the secret itself."""

    delivery_id: str
    webhook_id: str
    attempt: int
    request: OutgoingRequest
    refused: str | None = None  # why it is not sent at all (the webhook was deactivated)


def encode(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def signature(secret: str, body: bytes) -> str:
    """``Pulumi-Webhook-Signature``: lowercase hex HMAC-SHA256 of the exact body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _headers(
    ctx: Context,
    *,
    delivery_id: str,
    kind: str,
    body: bytes,
    sealed_secret: str | None,
    opened: dict[str, str] | None = None,
) -> dict[str, str]:
    """The request headers; ``opened`` memoises decrypted secrets over one batch (never kept longer)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": _USER_AGENT,
        "Pulumi-Webhook-ID": delivery_id,
        "Pulumi-Webhook-Kind": kind,
    }
    if sealed_secret:
        secret = opened.get(sealed_secret) if opened is not None else None
        if secret is None:
            secret = ctx.secrets.open(sealed_secret)
            if opened is not None:
                opened[sealed_secret] = secret
        headers["Pulumi-Webhook-Signature"] = signature(secret, body)
    return headers


def _event_view(event: Any) -> payloads.EventView:
    payload = dict(event.payload or {})
    names = payload.get("stack") if isinstance(payload.get("stack"), dict) else payload
    return payloads.EventView(
        kind=event.kind,
        org=event.org,
        project=names.get("projectName"),
        stack=names.get("stackName"),
        payload=payload,
        created_at=event.created_at,
    )


# --- fan-out ----------------------------------------------------------------------------------------


class FannedOut(NamedTuple):
    events: int  # events taken from the outbox
    deliveries: int  # deliveries created, due at once


async def fan_out(ctx: Context, limit: int = FAN_OUT_BATCH) -> FannedOut:
    """Turn undispatched events into deliveries (and deployments, for deployment edges)."""
    queued_deployments = False
    async with ctx.db.write() as conn:
        batch = await rows.undispatched_events(conn, limit)
        if not batch:
            return FannedOut(0, 0)
        scoped: dict[tuple[str, str | None], list[Any]] = {}  # (org, stack id or None for org hooks) -> hooks
        for hook in await rows.for_events(conn, {(event.org, event.stack_id) for event in batch}):
            scoped.setdefault((hook.org, hook.stack_id), []).append(hook)
        modes: dict[str, str] = {}  # org -> cascade mode, read only when an edge is met
        now = ctx.now()
        new_deliveries: list[dict[str, Any]] = []
        for event in batch:
            bodies: dict[str, str] = {}  # format -> body: every webhook of one format gets the same bytes
            candidates = scoped.get((event.org, None), []) + (
                scoped.get((event.org, event.stack_id), []) if event.stack_id else []
            )
            for hook in candidates:
                stack_scoped = hook.stack_id is not None
                if event.created_at < hook.created_at:
                    continue  # it happened before the webhook existed (the dispatcher had not got to it yet)
                edge = hook.format == WebhookFormat.PULUMI_DEPLOYMENTS.value
                if edge:
                    # Coalesced orgs (the default) deploy downstream stacks through cascades only; per-edge
                    # orgs fire the edge here, as Pulumi's deployment webhooks do. Each deployment ends in
                    # the mode it began in: one of a cascade never fires an edge, even if the org was
                    # switched to per-edge since (its cascade deploys what is downstream; this would deploy
                    # the member a second time), and one that began per edge (``FIRES_EDGES``) always
                    # does, even if the org was switched to coalesced since (no cascade would deploy it).
                    payload = event.payload if isinstance(event.payload, dict) else {}
                    if payload.get("cascadeId"):
                        continue
                    if not payload.get(FIRES_EDGES):
                        if hook.org not in modes:
                            modes[hook.org] = await cascade_rows.cascade_mode(conn, hook.org)
                        if modes[hook.org] != "per-edge":
                            continue
                if not matches(hook.filters, hook.groups, event.kind, stack_scoped=stack_scoped):
                    continue
                if edge:
                    queued_deployments |= await _fire_edge(ctx, conn, hook, event, now)
                    continue
                body = bodies.get(hook.format)
                if body is None:
                    body = encode(payloads.render(WebhookFormat(hook.format), _event_view(event), ctx.public_url))
                    bodies[hook.format] = body
                new_deliveries.append(
                    _delivery_row(str(uuid.uuid4()), hook.id, event.id, event.kind, body, now, rows.PENDING)
                )
        await rows.insert_deliveries(conn, new_deliveries)
        await rows.mark_dispatched(conn, [event.id for event in batch])
    if queued_deployments:
        ctx.work.notify()
    return FannedOut(len(batch), len(new_deliveries))


async def _fire_edge(ctx: Context, conn: AsyncConnection, hook: Any, event: Any, now: float) -> bool:
    """Deploy the edge's downstream stack, at most once per upstream deployment; True when one was queued.

    The outcome is recorded as a delivery of the webhook (202 with the deployment, or the refusal).
    """
    source = event.deployment_id or f"event:{event.id}"
    if not await rows.claim_firing(conn, hook.id, source, now):
        return False
    target = await stack_rows.get_with_settings(conn, hook.target_stack_id)
    upstream = f"{hook.project}/{hook.stack}"
    queued = None
    try:
        async with conn.begin_nested():
            queued = await queue_in(
                conn,
                target,
                Operation.UPDATE,
                {},
                now=now,
                inherit=True,
                initiator="webhook",
                requested_by=f"webhook {hook.name} on {upstream}",
                triggered_by=event.deployment_id,
                fires_edges=True,  # fired by an edge: per edge it goes on, whatever the mode is by then
            )
    except CascadeError as exc:
        code, response = exc.status_code, {"code": exc.status_code, "message": exc.message}
    if queued is not None:
        await rows.set_firing_deployment(conn, hook.id, source, queued.id)
        code = 202
        response = {
            "id": queued.id,
            "version": queued.version,
            "consoleUrl": ctx.console_url(hook.org, target.project, target.name, "deployments", str(queued.version)),
        }
    delivery_id = str(uuid.uuid4())
    body = encode(payloads.render(WebhookFormat.RAW, _event_view(event), ctx.public_url))
    outcome = rows.SUCCEEDED if queued is not None else rows.FAILED
    await rows.insert_deliveries(conn, [_delivery_row(delivery_id, hook.id, event.id, event.kind, body, now, outcome)])
    result = AttemptResult(sent_at=now, duration_ms=0, response_code=code, response_body=encode(response))
    await rows.insert_attempts(
        conn,
        [
            _attempt_row(
                delivery_id, hook.id, 1, hook.payload_url, {"Pulumi-Webhook-Kind": webhook_kind(event.kind)}, result
            )
        ],
    )
    return queued is not None


# --- delivery ---------------------------------------------------------------------------------------


async def claim_due(ctx: Context, limit: int, lease_seconds: float = 60.0) -> list[DueDelivery]:
    """Lease due deliveries for sending; a lease that is not recorded in time comes due again."""
    async with ctx.db.write() as conn:
        claimed = await rows.claim_due(conn, now=ctx.now(), limit=limit, lease_seconds=lease_seconds)
    due = []
    opened: dict[str, str] = {}
    for row in claimed:
        body = row.body.encode()
        headers = _headers(ctx, delivery_id=row.id, kind=row.kind, body=body, sealed_secret=row.secret, opened=opened)
        request = OutgoingRequest(url=row.payload_url, headers=headers, body=body)
        refused = None if row.active else "the webhook is inactive"
        due.append(DueDelivery(row.id, row.webhook_id, row.attempts + 1, request, refused))
    return due


def _delivery_row(
    delivery_id: str,
    webhook_id: str,
    event_id: int | None,
    event: str,
    body: str,
    now: float,
    status: str,
    *,
    kind: str | None = None,
) -> dict[str, Any]:
    """A delivery to send (``pending``: due now), or one already sent once (ping, redeliver, an edge)."""
    pending = status == rows.PENDING
    return {
        "id": delivery_id,
        "webhook_id": webhook_id,
        "event_id": event_id,
        "event": event,
        "kind": kind or webhook_kind(event),
        "body": body,
        "status": status,
        "attempts": 0 if pending else 1,
        "next_attempt_at": now if pending else None,
        "created_at": now,
        "finished_at": None if pending else now,
    }


def _attempt_row(
    delivery_id: str, webhook_id: str, attempt: int, url: str, headers: dict[str, str], result: AttemptResult
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "delivery_id": delivery_id,
        "webhook_id": webhook_id,
        "attempt": attempt,
        "sent_at": result.sent_at,
        "duration_ms": result.duration_ms,
        "request_url": url,
        "request_headers": headers,
        "response_code": result.response_code,
        "response_headers": result.response_headers,
        "response_body": result.response_body[:MAX_RESPONSE_BODY],
        "error": result.error,
    }


async def record(ctx: Context, outcomes: list[tuple[DueDelivery, AttemptResult | None]]) -> None:
    """Store the attempts and move each delivery on: done, retried later, or given up. One transaction.

    A ``None`` result means the delivery was not sent (its webhook is inactive): it ends as failed.
    """
    now = ctx.now()
    policy = ctx.webhook_retry
    attempts = []
    moves = []
    for due, result in outcomes:
        move: dict[str, Any] = {"delivery_id": due.delivery_id, "attempts": due.attempt}
        if result is None:
            # not sent: the attempt count stays what it was when claimed
            move.update(status=rows.FAILED, attempts=due.attempt - 1, next_attempt_at=None, finished_at=now)
        else:
            attempts.append(
                _attempt_row(due.delivery_id, due.webhook_id, due.attempt, due.request.url, due.request.headers, result)
            )
            if result.succeeded:
                move.update(status=rows.SUCCEEDED, next_attempt_at=None, finished_at=now)
            elif policy.gives_up(due.attempt):
                move.update(status=rows.FAILED, next_attempt_at=None, finished_at=now)
            else:
                move.update(
                    status=rows.PENDING, next_attempt_at=now + policy.delay(due.attempt, ctx.random), finished_at=None
                )
        moves.append(move)
    async with ctx.db.write() as conn:
        await rows.update_deliveries(conn, moves)
        await rows.insert_attempts(conn, attempts)


# --- ping, redeliver, history -----------------------------------------------------------------------


def _require_http(hook: Any) -> None:
    if hook.format == WebhookFormat.PULUMI_DEPLOYMENTS.value:
        raise InvalidInput(
            "pulumi_deployments webhooks deploy a stack instead of sending HTTP: there is nothing to send"
        )


async def _send_now(ctx: Context, hook: Any, *, event: str, kind: str, body_text: str) -> Any:
    """Send once, synchronously, and record it as a delivery of its own (no retries)."""
    _require_http(hook)
    if ctx.webhook_client is None:
        raise InvalidInput("webhook delivery is not configured on this server")
    delivery_id = str(uuid.uuid4())
    body = body_text.encode()
    headers = _headers(ctx, delivery_id=delivery_id, kind=kind, body=body, sealed_secret=hook.secret)
    result = await ctx.webhook_client.send(OutgoingRequest(url=hook.payload_url, headers=headers, body=body))
    now = ctx.now()
    attempt = _attempt_row(delivery_id, hook.id, 1, hook.payload_url, headers, result)
    async with ctx.db.write() as conn:
        outcome = rows.SUCCEEDED if result.succeeded else rows.FAILED
        row = _delivery_row(delivery_id, hook.id, None, event, body_text, now, outcome, kind=kind)
        await rows.insert_deliveries(conn, [row])
        await rows.insert_attempts(conn, [attempt])
        return await rows.attempt(conn, attempt["id"])


async def ping(ctx: Context, principal: Principal, scope: Scope, name: str) -> Any:
    hook = await get(ctx, principal, scope, name)
    _require_http(hook)
    body = encode(ping_body(ctx, hook, scope))
    return await _send_now(ctx, hook, event="ping", kind="ping", body_text=body)


def ping_body(ctx: Context, hook: Any, scope: Scope) -> dict[str, Any]:
    return payloads.ping(
        WebhookFormat(hook.format), scope.org, scope.project, scope.stack, ctx.public_url, timestamp=ctx.now()
    )


async def redeliver(ctx: Context, principal: Principal, scope: Scope, name: str, identifier: str) -> Any:
    """Send a delivery's original body again, unchanged, as a new delivery (synchronously)."""
    hook = await get(ctx, principal, scope, name)
    async with ctx.db.read() as conn:
        original = await rows.delivery_of(conn, hook.id, identifier)
    if original is None:
        raise NotFound(f"webhook {name!r} has no delivery or attempt {identifier!r}")
    return await _send_now(ctx, hook, event=original.event, kind=original.kind, body_text=original.body)


MAX_PAGE_SIZE = 100


async def history(
    ctx: Context, principal: Principal, scope: Scope, name: str, *, page_size: int | None, before: str | None
) -> list[Any]:
    """Attempts newest first; ``before`` (an attempt id, the last one of the previous page) continues."""
    limit = 50 if page_size is None else page_size
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
    hook = await get(ctx, principal, scope, name)
    async with ctx.db.read() as conn:
        before_seq = None
        if before:
            last = await rows.attempt(conn, before)
            if last is None or last.webhook_id != hook.id:
                raise InvalidInput(f"before={before!r} is not an attempt of webhook {name!r}")
            before_seq = last.seq
        return await rows.attempts_page(conn, hook.id, limit=limit, before_seq=before_seq)
