"""Console pages: the org's cascades, one cascade in waves, and approve / reject / retry of a member."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, Response

from stackcascade.domain.errors import Conflict, NotFound
from stackcascade.domain.roles import Principal, Role
from stackcascade.services import cascade_summaries, cascades
from stackcascade.services.context import Context
from stackcascade.web import cascade_view, urls
from stackcascade.web.pages import redirect, render, status_label
from stackcascade.web.routing import console_router
from stackcascade.web.session import Posted, Viewer

router = console_router()

LIST_LIMIT = 50  # finished cascades per page; running ones are all listed
# A continuation token of the list of finished cascades, as ``services.cascades.list_cascades`` gives out.
After = Annotated[str | None, Query(max_length=200)]

MemberAction = Callable[[Context, Principal, str, str, str], Awaitable[None]]
# action in the address -> (service call, verb for messages, what happens next)
ACTIONS: dict[str, tuple[MemberAction, str, str]] = {
    "approve": (cascades.approve, "approve", "Approved {stack}: it deploys now"),
    "reject": (cascades.reject, "reject", "Rejected {stack}: it is skipped, and so is what only it would have set off"),
    "retry": (cascades.retry, "retry", "Retrying {stack}: the stacks it had stopped wait for it again"),
}


def member_url(org: str, cascade_id: str, stack: str, action: str) -> str:
    """Where a member's button posts: ``.../cascades/{id}/members/{project}/{stack}/{action}``."""
    project, _, name = stack.partition("/")
    return f"{urls.cascade(org, cascade_id)}/members/{quote(project, safe='')}/{quote(name, safe='')}/{action}"


def may_act(principal: Principal, org: str) -> bool:
    """Members and admins see the buttons; a viewer sees none (and the service refuses it anyway)."""
    return principal.role_in(org) in (Role.MEMBER, Role.ADMIN)


@router.get("/{org}/~/cascades")
async def cascade_list(request: Request, org: str, principal: Viewer, after: After = None) -> HTMLResponse:
    """Every running cascade first, however old (one may await an approval), then finished ones, paged."""
    found = await cascade_summaries.page(
        request.app.state.context, principal, org, limit=LIST_LIMIT, continuation=after
    )
    return render(
        request,
        "cascades.html",
        org=org,
        section="cascades",
        running=[(line.row, cascade_view.count_summary(line.counts, status_label)) for line in found.running],
        lines=[(line.row, cascade_view.count_summary(line.counts, status_label)) for line in found.finished],
        after=after,
        older=found.older,
    )


@router.get("/{org}/~/cascades/{cascade_id}")
async def cascade_page(request: Request, org: str, cascade_id: str, principal: Viewer) -> HTMLResponse:
    ctx: Context = request.app.state.context
    row, members = await cascades.get(ctx, principal, org, cascade_id)
    starter = await cascade_summaries.starter(ctx, principal, org, row.root_deployment_id)
    return render(
        request,
        "cascade.html",
        org=org,
        section="cascades",
        cascade=cascade_view.build(row, members),
        starter=starter,
        can_act=may_act(principal, org),
        count_summary=cascade_view.count_summary,
        member_url=member_url,
    )


@router.post("/{org}/~/cascades/{cascade_id}/members/{project}/{stack}/{action}")
async def member_action(
    request: Request, org: str, cascade_id: str, project: str, stack: str, action: str, posted: Posted
) -> Response:
    if action not in ACTIONS:
        raise NotFound(f"there is no action {action!r} on a cascade member: use approve, reject or retry")
    call, verb, done = ACTIONS[action]
    member = f"{project}/{stack}"
    try:
        await call(request.app.state.context, posted.principal, org, cascade_id, member)
    except Conflict as exc:
        return render(
            request,
            "cascade_conflict.html",
            status=409,
            org=org,
            section="cascades",
            title=f"Could not {verb} {member}",
            message=exc.message,
            back=urls.cascade(org, cascade_id),
        )
    return redirect(urls.cascade(org, cascade_id), flash=done.format(stack=member))
