"""The stack page: status, settings, outputs, history, edges, impact plan; deploy, pause, approval gate."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stackcascade.domain.deployments import Operation
from stackcascade.domain.errors import Conflict, InvalidInput, NotFound
from stackcascade.domain.roles import Principal, Role
from stackcascade.services import cascades, deployment_settings, deployments, runs, stack_view, stacks
from stackcascade.services.context import Context
from stackcascade.web import urls
from stackcascade.web.forms import Form
from stackcascade.web.pages import redirect, render
from stackcascade.web.routing import console_router
from stackcascade.web.session import Posted, Viewer

router = console_router()

HISTORY_PAGE_SIZE = 20
OPERATIONS = tuple(operation.value for operation in Operation)
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def may_change(principal: Principal | None, org: str) -> bool:
    """Write controls are only drawn for members and admins (a viewer's POST is refused anyway)."""
    return principal is not None and principal.role_in(org) in (Role.MEMBER, Role.ADMIN)


def _where(org: str, project: str, stack: str) -> str:
    return f"stack {org}/{project}/{stack}"


# --- the one-off override form -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeployDraft:
    """What was typed into the deploy form, kept to show again when it cannot be used.

    Secret values are never sent back to the browser: a re-shown form asks for them again.
    """

    operation: str = "update"
    branch: str = ""
    commit: str = ""
    env: str = ""
    secret_env: str = ""
    pre_run: str = ""

    @classmethod
    def of(cls, form: Form) -> DeployDraft:
        return cls(
            operation=form.text("operation") or "update",
            branch=form.text("branch"),
            commit=form.text("commit"),
            env=form.get("env") or "",
            secret_env=form.get("secret_env") or "",
            pre_run=form.get("pre_run") or "",
        )

    @property
    def has_overrides(self) -> bool:
        return any(v.strip() for v in (self.branch, self.commit, self.env, self.secret_env, self.pre_run))

    def request_body(self) -> dict[str, Any]:
        """The REST API's create-deployment body (settings inherited, these values on top), or InvalidInput."""
        if self.operation not in OPERATIONS:
            raise InvalidInput(f"choose an operation: {', '.join(OPERATIONS)} (got {self.operation!r})")
        if self.branch and self.commit:
            raise InvalidInput("give a branch or a commit, not both")
        plain = _variables(self.env, "environment variables", echo=True)
        secret = _variables(self.secret_env, "secret environment variables", echo=False)
        both = sorted(set(plain) & set(secret))
        if both:
            raise InvalidInput(f"{', '.join(both)}: give each variable once, as plain or as secret")
        body: dict[str, Any] = {"operation": self.operation, "inheritSettings": True}
        context: dict[str, Any] = {}
        if plain or secret:
            context["environmentVariables"] = plain | {name: {"secret": value} for name, value in secret.items()}
        commands = [line.strip() for line in self.pre_run.splitlines() if line.strip()]
        if commands:
            context["preRunCommands"] = commands
        if context:
            body["operationContext"] = context
        if self.branch or self.commit:
            body["sourceContext"] = {"git": {"branch": self.branch} if self.branch else {"commit": self.commit}}
        return body


def _variables(text: str, what: str, *, echo: bool) -> dict[str, str]:
    """``NAME=value`` lines; blank lines and ``#`` comments are skipped. A secret line is never quoted back."""
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        shown = f" ({line!r})" if echo else ""
        if not sep:
            raise InvalidInput(f"{what}, line {number}{shown}: no '=' found; write NAME=value")
        if not _VARIABLE_NAME.fullmatch(name):
            raise InvalidInput(
                f"{what}, line {number}: {name!r} is not a variable name (letters, digits and '_', "
                "not starting with a digit)"
            )
        if name in found:
            raise InvalidInput(f"{what}: {name} is given twice")
        found[name] = value.strip()
    return found


# --- the page ----------------------------------------------------------------------------------------


async def _settings(ctx: Context, principal: Principal, org: str, project: str, stack: str) -> Any:
    try:
        document, version = await deployment_settings.get(ctx, principal, org, project, stack)
    except NotFound:
        return None  # the stack itself was found just before: it has no settings
    return stack_view.settings_view(document, version)


async def stack_page(
    request: Request,
    principal: Principal,
    org: str,
    project: str,
    stack: str,
    *,
    page: int = 1,
    draft: DeployDraft | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    ctx: Context = request.app.state.context
    row, latest_id = await stacks.get(ctx, principal, org, project, stack)
    metadata = await deployments.stack_metadata(ctx, principal, org, project, stack)
    history, total = await deployments.list_for_stack(
        ctx, principal, org, project, stack, page=page, page_size=HISTORY_PAGE_SIZE, ascending=False
    )
    latest = history[0] if page == 1 and history else None
    if latest is None and latest_id:
        latest, _, _ = await deployments.get(ctx, principal, org, project, stack, latest_id)
    outputs = await runs.read_outputs(ctx, principal, org, project, stack, show_secrets=False)
    plan = (await cascades.impact_plan(ctx, principal, org, project, stack, "update")).plan
    return render(
        request,
        "stack.html",
        status=status,
        org=org,
        section="overview",
        project=project,
        stack=stack,
        ref=f"{project}/{stack}",
        row=row,
        latest=latest,
        metadata=metadata,
        counts=metadata["deploymentCounts"],
        history=history,
        total=total,
        page=page,
        pages=max(1, -(-total // HISTORY_PAGE_SIZE)),
        settings=await _settings(ctx, principal, org, project, stack),
        outputs=outputs["outputs"],
        secret_outputs=set(outputs["secretOutputs"]),
        neighbours=await stack_view.neighbours(ctx, principal, org, project, stack),
        plan=plan,
        plan_gates={edge.downstream for edge in plan.edges if edge.require_approval} if plan else set(),
        can_change=may_change(principal, org),
        operations=OPERATIONS,
        draft=draft or DeployDraft(),
        deploy_error=error,
        mask=stack_view.MASK,
    )


@router.get("/{org}/{project}/{stack}")
async def show_stack(
    request: Request,
    org: str,
    project: str,
    stack: str,
    principal: Viewer,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> HTMLResponse:
    return await stack_page(request, principal, org, project, stack, page=page)


@router.get("/{org}/{project}/{stack}/deploy")
async def deploy_form(org: str, project: str, stack: str, _principal: Viewer) -> Response:
    """The form lives on the stack page (a re-shown form's address may be reloaded)."""
    return RedirectResponse(urls.stack(org, project, stack) + "#deploy", status_code=303)


@router.post("/{org}/{project}/{stack}/deploy")
async def deploy(request: Request, org: str, project: str, stack: str, submission: Posted) -> Response:
    principal = submission.principal
    principal.require(org, Role.MEMBER, _where(org, project, stack))  # a viewer learns nothing from the form
    draft = DeployDraft.of(submission.form)
    ctx: Context = request.app.state.context
    try:
        row = await deployments.create(ctx, principal, org, project, stack, draft.request_body(), initiator="console")
    except (InvalidInput, Conflict) as exc:
        return await stack_page(
            request, principal, org, project, stack, draft=draft, error=exc.message, status=exc.status_code
        )
    cascade = " It starts a cascade of the stacks downstream." if row.cascade_id else ""
    return redirect(
        urls.deployment(org, project, stack, row.id),
        flash=f"Deployment #{row.version} ({row.operation}) of {project}/{stack} queued.{cascade}",
    )


@router.post("/{org}/{project}/{stack}/pause")
async def pause(request: Request, org: str, project: str, stack: str, submission: Posted) -> Response:
    await deployments.set_stack_paused(request.app.state.context, submission.principal, org, project, stack, True)
    return redirect(
        urls.stack(org, project, stack),
        flash=f"{project}/{stack} is paused: queued deployments wait until it is resumed (a running one finishes).",
    )


@router.post("/{org}/{project}/{stack}/resume")
async def resume(request: Request, org: str, project: str, stack: str, submission: Posted) -> Response:
    await deployments.set_stack_paused(request.app.state.context, submission.principal, org, project, stack, False)
    return redirect(urls.stack(org, project, stack), flash=f"{project}/{stack} is resumed: queued deployments run.")


@router.post("/{org}/{project}/{stack}/gate")
async def gate(request: Request, org: str, project: str, stack: str, submission: Posted) -> Response:
    wanted = submission.form.text("require_approval")
    if wanted not in ("on", "off"):
        raise InvalidInput("require_approval must be on or off")
    ctx: Context = request.app.state.context
    await cascades.set_stack_gate(ctx, submission.principal, org, project, stack, wanted == "on")
    message = (
        f"In every cascade, {project}/{stack} now waits for an approval before it deploys."
        if wanted == "on"
        else f"{project}/{stack} no longer waits for an approval in cascades."
    )
    return redirect(urls.stack(org, project, stack), flash=message)
