"""The org overview: every stack with its last deployment, outputs age, tags, pause and queue."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

from stackcascade.services import overview
from stackcascade.web.pages import render
from stackcascade.web.routing import console_router
from stackcascade.web.session import Viewer

router = console_router()

STATUS_FILTERS = {
    "": "any state",
    "failed": "failed",
    "running": "running or queued",
    "succeeded": "succeeded",
    "never": "never deployed",
    "paused": "paused",
}


def _matches(line: overview.StackLine, words: list[str], state: str) -> bool:
    haystack = " ".join([line.ref, *(f"{k}:{v}" for k, v in line.tags.items())]).lower()
    if any(word not in haystack for word in words):
        return False
    if state == "failed":
        return line.deployment_status == "failed"
    if state == "running":
        return line.running + line.queued > 0
    if state == "succeeded":
        return line.deployment_status == "succeeded"
    if state == "never":
        return line.deployment_status is None
    if state == "paused":
        return line.paused
    return True


@router.get("/{org}")
async def org_overview(
    request: Request,
    org: str,
    principal: Viewer,
    q: Annotated[str, Query(max_length=200)] = "",
    state: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    view = await overview.org_overview(request.app.state.context, principal, org)
    state = state if state in STATUS_FILTERS else ""
    words = q.lower().split()
    shown = [line for line in view.stacks if _matches(line, words, state)]
    return render(
        request,
        "overview.html",
        org=org,
        view=view,
        shown=shown,
        q=q,
        state=state,
        status_filters=STATUS_FILTERS,
        failed=sum(1 for s in view.stacks if s.deployment_status == "failed"),
    )
