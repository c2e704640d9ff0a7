"""Webhook pages of organizations (``/{org}/~/webhooks``) and stacks (``/{org}/{project}/{stack}/webhooks``).

One set of handlers serves both: the scope comes from the path, as in the API's routes. Every change goes
through the same services as ``/api/.../hooks``, with the same JSON body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from stackcascade.domain.errors import Conflict, InvalidInput
from stackcascade.domain.roles import Principal, Role
from stackcascade.services import stacks, webhook_delivery, webhooks
from stackcascade.services.context import Context
from stackcascade.services.webhooks import Scope
from stackcascade.web.pages import redirect, render
from stackcascade.web.routing import console_router
from stackcascade.web.session import Posted, Viewer
from stackcascade.web.webhook_views import (
    EDGE,
    EVENT_SECTIONS,
    FORMAT_LABELS,
    GROUP_HINTS,
    TRIGGER_HINTS,
    AttemptView,
    FormValues,
    attempt_view,
    body_from,
    event_label,
    field_in_error,
    values_from,
    values_of,
    webhook_url,
    webhooks_url,
)

router = console_router()

ORG_PATH = "/{org}/~/webhooks"
STACK_PATH = "/{org}/{project}/{stack}/webhooks"
HISTORY_PAGE = 20
LAST_DELIVERY_SHOWN = 50  # webhooks whose last delivery the list looks up
STACK_CHOICES = 1000  # stacks offered as deployment-edge targets on the form


def _scope(request: Request) -> Scope:
    params = request.path_params
    return Scope(params["org"], params.get("project"), params.get("stack"))


Scoped = Annotated[Scope, Depends(_scope)]
Before = Annotated[str | None, Query(max_length=64)]
Opened = Annotated[str | None, Query(alias="open", max_length=64)]


def _ctx(request: Request) -> Context:
    return request.app.state.context  # type: ignore[no-any-return]


def _may_write(principal: Principal, org: str) -> bool:
    return principal.role_in(org) in (Role.ADMIN, Role.MEMBER)


def _page(request: Request, template: str, scope: Scope, *, status: int = 200, **values: Any) -> HTMLResponse:
    """Render with what every webhook page shows: where the webhooks live and the links back."""
    principal = request.state.principal
    return render(
        request,
        template,
        status=status,
        org=scope.org,
        section="overview" if scope.is_stack else "webhooks",
        scope=scope,
        scope_ref=f"{scope.project}/{scope.stack}" if scope.is_stack else None,
        list_url=webhooks_url(scope),
        hook_url=lambda name, *more: webhook_url(scope, name, *more),
        may_write=_may_write(principal, scope.org),
        format_labels=FORMAT_LABELS,
        event_label=event_label,
        edge=EDGE,
        trigger_hints=TRIGGER_HINTS,
        **values,
    )


async def _last_attempts(ctx: Context, principal: Principal, scope: Scope, hooks: list[Any]) -> dict[str, AttemptView]:
    """Each webhook's latest attempt, for the list: one small indexed read per webhook, so only for the
    first ``LAST_DELIVERY_SHOWN`` of a long list (the others show theirs on their own page)."""
    latest: dict[str, AttemptView] = {}
    for hook in hooks[:LAST_DELIVERY_SHOWN]:
        rows = await webhook_delivery.history(ctx, principal, scope, hook.name, page_size=1, before=None)
        if rows:
            latest[hook.name] = attempt_view(rows[0], is_edge=hook.format == EDGE)
    return latest


async def list_page(request: Request, principal: Viewer, scope: Scoped) -> HTMLResponse:
    ctx = _ctx(request)
    hooks = await webhooks.list_webhooks(ctx, principal, scope)
    last = await _last_attempts(ctx, principal, scope, hooks)
    return _page(request, "webhooks.html", scope, hooks=hooks, last=last, last_shown=LAST_DELIVERY_SHOWN)


# --- create and edit --------------------------------------------------------------------------------


async def _stack_choices(ctx: Context, principal: Principal, scope: Scope) -> list[str]:
    """The org's stacks as ``project/stack``: the targets a deployment edge may have."""
    if not scope.is_stack:
        return []
    rows, _ = await stacks.list_stacks(
        ctx,
        principal,
        org=scope.org,
        project=None,
        tag_name=None,
        tag_value=None,
        continuation=None,
        max_results=STACK_CHOICES,
    )
    own = f"{scope.project}/{scope.stack}"
    return [ref for ref in (f"{row.project}/{row.name}" for row in rows) if ref != own]


async def _form(
    request: Request,
    scope: Scope,
    values: FormValues,
    *,
    hook: Any = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    return _page(
        request,
        "webhook_form.html",
        scope,
        status=status,
        hook=hook,
        values=values,
        error=error,
        error_field=field_in_error(error) if error else None,
        event_sections=[s for s in EVENT_SECTIONS if not (s.org_only and scope.is_stack)],
        group_hints=GROUP_HINTS,
        stack_choices=await _stack_choices(_ctx(request), request.state.principal, scope),
    )


async def new_form(request: Request, principal: Viewer, scope: Scoped) -> HTMLResponse:
    await webhooks.list_webhooks(_ctx(request), principal, scope)  # the service's access check (member, stack)
    return await _form(request, scope, FormValues())


async def create(request: Request, posted: Posted, scope: Scoped) -> Response:
    try:
        hook = await webhooks.create(_ctx(request), posted.principal, scope, body_from(posted.form, creating=True))
    except (InvalidInput, Conflict) as exc:
        return await _form(request, scope, values_from(posted.form), error=exc.message, status=exc.status_code)
    return redirect(webhook_url(scope, hook.name), flash=f"Created webhook {hook.name}.")


def _refuse_managed(scope: Scope, hook: Any) -> None:
    """Say why before showing a form whose every save the service would refuse."""
    if hook.managed:
        raise Conflict(
            f"webhook {hook.name!r} belongs to the organization's Auto Deploy declaration, so it is changed only by "
            f"applying a new declaration (cascade autodeploy apply, or PUT /api/orgs/{scope.org}/autodeploy)"
        )


async def edit_form(request: Request, principal: Viewer, scope: Scoped, name: str) -> HTMLResponse:
    hook = await webhooks.get(_ctx(request), principal, scope, name)
    _refuse_managed(scope, hook)
    return await _form(request, scope, values_of(hook), hook=hook)


async def update(request: Request, posted: Posted, scope: Scoped, name: str) -> Response:
    ctx = _ctx(request)
    hook = await webhooks.get(ctx, posted.principal, scope, name)
    _refuse_managed(scope, hook)
    try:
        changed = await webhooks.update(ctx, posted.principal, scope, name, body_from(posted.form, creating=False))
    except (InvalidInput, Conflict) as exc:
        values = values_from(posted.form)
        values.name = hook.name
        return await _form(request, scope, values, hook=hook, error=exc.message, status=exc.status_code)
    return redirect(webhook_url(scope, changed.name), flash=f"Saved webhook {changed.name}.")


async def remove(request: Request, posted: Posted, scope: Scoped, name: str) -> Response:
    await webhooks.delete(_ctx(request), posted.principal, scope, name)
    return redirect(webhooks_url(scope), flash=f"Deleted webhook {name}.")


# --- one webhook: settings, history, ping, redeliver ------------------------------------------------


async def webhook_page(
    request: Request, principal: Viewer, scope: Scoped, name: str, before: Before = None, opened: Opened = None
) -> HTMLResponse:
    ctx = _ctx(request)
    hook = await webhooks.get(ctx, principal, scope, name)
    rows = await webhook_delivery.history(ctx, principal, scope, name, page_size=HISTORY_PAGE + 1, before=before)
    attempts = [attempt_view(row, is_edge=hook.format == EDGE) for row in rows[:HISTORY_PAGE]]
    older = attempts[-1].id if len(rows) > HISTORY_PAGE else None
    return _page(
        request, "webhook.html", scope, hook=hook, attempts=attempts, before=before, older=older, opened=opened
    )


def _outcome(what: str, attempt: AttemptView) -> str:
    if attempt.succeeded:
        return f"{what} delivered: answered HTTP {attempt.response_code} in {attempt.duration_ms} ms."
    reason = attempt.error or f"answered HTTP {attempt.response_code}"
    return f"{what} failed: {reason}."


async def ping(request: Request, posted: Posted, scope: Scoped, name: str) -> Response:
    row = await webhook_delivery.ping(_ctx(request), posted.principal, scope, name)
    attempt = attempt_view(row, is_edge=False)
    return redirect(f"{webhook_url(scope, name)}?open={attempt.id}", flash=_outcome("Ping", attempt))


async def redeliver(request: Request, posted: Posted, scope: Scoped, name: str, attempt_id: str) -> Response:
    row = await webhook_delivery.redeliver(_ctx(request), posted.principal, scope, name, attempt_id)
    attempt = attempt_view(row, is_edge=False)
    return redirect(f"{webhook_url(scope, name)}?open={attempt.id}", flash=_outcome("Redelivery", attempt))


ROUTES: list[tuple[str, str, Callable[..., Any]]] = [
    ("GET", "", list_page),
    ("GET", "/new", new_form),
    ("POST", "/new", create),
    ("GET", "/{name}", webhook_page),
    ("GET", "/{name}/edit", edit_form),
    ("POST", "/{name}/edit", update),
    ("POST", "/{name}/delete", remove),
    ("POST", "/{name}/ping", ping),
    ("POST", "/{name}/deliveries/{attempt_id}/redeliver", redeliver),
]

# Organization pages first: ``/{org}/~/webhooks/...`` must never be read as a stack named "webhooks"
# in a project "~" (no project can be called that).
for _prefix in (ORG_PATH, STACK_PATH):
    for _method, _suffix, _handler in ROUTES:
        router.add_api_route(_prefix + _suffix, _handler, methods=[_method])
