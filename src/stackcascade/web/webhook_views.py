"""Webhook pages' helpers: the form <-> the REST API's JSON body, and delivery attempts as people read them.

The console builds exactly the body ``POST|PATCH .../hooks`` takes and hands it to the same service, so the
service's checks (formats, filters, refused targets, cycles) and messages are the API's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from stackcascade.domain.webhook_events import (
    DEPLOYMENT_EVENTS,
    GROUPS,
    OPERATION_EVENTS,
    STACK_EVENTS,
    WebhookFormat,
)
from stackcascade.services.webhooks import TRIGGER_ON, Scope
from stackcascade.web import urls
from stackcascade.web.forms import Form

EDGE = WebhookFormat.PULUMI_DEPLOYMENTS.value

FORMAT_LABELS = {
    WebhookFormat.RAW.value: "Pulumi's JSON payloads",
    WebhookFormat.SLACK.value: "a Slack incoming-webhook message",
    WebhookFormat.MS_TEAMS.value: "a Microsoft Teams message card",
    EDGE: "deploy another stack (a deployment edge)",
}
assert set(FORMAT_LABELS) == {f.value for f in WebhookFormat}, "every webhook format needs a label on the form"

GROUP_HINTS = {
    "stacks": "stack created/deleted and every update, preview, refresh and destroy result",
    "deployments": "deployment queued, started, succeeded and failed",
}
assert set(GROUP_HINTS) == set(GROUPS), "every webhook group needs a hint on the form"

TRIGGER_HINTS = {
    "always": "every time a matching event happens upstream",
    "outputs-changed": "only when the upstream stack's outputs changed",
}
assert set(TRIGGER_HINTS) == set(TRIGGER_ON)


@dataclass(frozen=True, slots=True)
class EventSection:
    """A row of event checkboxes on the form."""

    title: str
    events: tuple[str, ...]
    org_only: bool = False


def _operation_sections() -> list[EventSection]:
    titles = {"update": "Updates", "preview": "Previews", "refresh": "Refreshes", "destroy": "Destroys"}
    sections: dict[str, list[str]] = {}
    for event in OPERATION_EVENTS:
        sections.setdefault(event.split("_")[0], []).append(event)
    return [EventSection(titles.get(op, op.title()), tuple(events)) for op, events in sections.items()]


EVENT_SECTIONS = (
    EventSection("Stacks", STACK_EVENTS, org_only=True),
    *_operation_sections(),
    EventSection("Deployments", DEPLOYMENT_EVENTS),
)


def event_label(event: str) -> str:
    return event.replace("_", " ")


def webhooks_url(scope: Scope) -> str:
    if scope.is_stack:
        return urls.stack_webhooks(scope.org, scope.project or "", scope.stack or "")
    return urls.org_webhooks(scope.org)


def webhook_url(scope: Scope, name: str, *more: str) -> str:
    return "/".join([webhooks_url(scope), quote(name, safe=""), *(quote(part, safe="") for part in more)])


# --- the form ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class FormValues:
    """What the form shows: a webhook's settings, or what was typed. Never the secret."""

    name: str = ""
    display_name: str = ""
    payload_url: str = ""
    format: str = WebhookFormat.RAW.value
    filters: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    active: bool = True
    trigger_on: str = "always"
    require_approval: bool = False
    remove_secret: bool = False


def values_of(hook: Any) -> FormValues:
    return FormValues(
        name=hook.name,
        display_name=hook.display_name,
        payload_url=hook.payload_url,
        format=hook.format,
        filters=list(hook.filters),
        groups=list(hook.groups),
        active=bool(hook.active),
        trigger_on=hook.trigger_on,
        require_approval=bool(hook.require_approval),
    )


def values_from(form: Form) -> FormValues:
    """What was typed; a deployment edge's ``payloadUrl`` is the stack picked in ``target``."""
    format_ = form.text("format")
    return FormValues(
        name=form.text("name"),
        display_name=form.text("displayName"),
        payload_url=form.text("target") if format_ == EDGE else form.text("payloadUrl"),
        format=format_,
        filters=form.getlist("filters"),
        groups=form.getlist("groups"),
        active=form.checked("active"),
        trigger_on=form.text("triggerOn") or "always",
        require_approval=form.checked("requireApproval"),
        remove_secret=form.checked("removeSecret"),
    )


def body_from(form: Form, *, creating: bool) -> dict[str, Any]:
    """The JSON body the REST API takes for this form: a create, or a PATCH of every field the form shows.

    An empty secret field keeps the current secret (the key is left out); "remove secret" sends ``""``.
    """
    values = values_from(form)
    body: dict[str, Any] = {
        "displayName": values.display_name,
        "payloadUrl": values.payload_url,
        "filters": values.filters,
        "groups": values.groups,
        "active": values.active,
    }
    if values.format:  # absent: raw on a create, unchanged on an edit
        body["format"] = values.format
    if creating and values.name:
        body["name"] = values.name
    secret = form.get("secret") or ""
    if values.remove_secret and not creating:
        body["secret"] = ""
    elif secret:
        body["secret"] = secret
    if values.format == EDGE:
        body |= {"triggerOn": values.trigger_on, "requireApproval": values.require_approval}
    elif not creating:  # a webhook that stops being an edge drops the edge's options
        body |= {"triggerOn": "always", "requireApproval": False}
    return body


_FIELD_WORDS = (
    ("only be used on organization webhooks", "events"),
    ("format", "format"),
    ("filter", "events"),
    ("group", "events"),
    ("triggeron", "triggerOn"),
    ("requireapproval", "triggerOn"),
    ("secret", "secret"),
    ("webhook name", "name"),
    ("named", "name"),
    ("displayname", "displayName"),
    ("payloadurl", "payloadUrl"),
    ("webhook target", "payloadUrl"),
    ("url", "payloadUrl"),
    ("cycle", "payloadUrl"),
    ("stack", "payloadUrl"),
)


def field_in_error(message: str) -> str | None:
    """The form field a service message is most likely about, to mark it invalid next to the message."""
    lowered = message.lower()
    for word, name in _FIELD_WORDS:
        if word in lowered:
            return name
    return None


# --- delivery attempts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptView:
    """One HTTP attempt (or edge firing), with its delivery's fate, ready for the page."""

    id: str
    delivery_id: str
    event: str
    kind: str
    attempt: int
    sent_at: float
    duration_ms: int
    response_code: int
    error: str | None
    request_url: str
    request_headers: dict[str, str]
    payload: str
    response_headers: dict[str, str]
    response_body: str
    delivery_status: str  # pending | succeeded | failed
    delivery_attempts: int
    next_attempt_at: float | None
    deployment_url: str | None  # an edge firing's deployment

    @property
    def succeeded(self) -> bool:
        return 200 <= self.response_code < 300

    @property
    def retrying(self) -> bool:
        """This failed attempt is the latest of a delivery that will be tried again."""
        return not self.succeeded and self.delivery_status == "pending" and self.attempt >= self.delivery_attempts

    @property
    def status(self) -> str:
        """A status for ``badge()``: succeeded, failed, or waiting (for a retry)."""
        if self.succeeded:
            return "succeeded"
        return "waiting" if self.retrying else "failed"

    @property
    def status_text(self) -> str:
        if self.succeeded:
            return "succeeded"
        return "failed, will retry" if self.retrying else "failed"

    @property
    def response_text(self) -> str:
        return f"HTTP {self.response_code}" if self.response_code else "no response"


def pretty(text: str) -> str:
    """JSON indented for reading; anything else as it came."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _deployment_url(response_body: str) -> str | None:
    try:
        answer = json.loads(response_body)
    except ValueError:
        return None
    link = answer.get("consoleUrl") if isinstance(answer, dict) else None
    return link if isinstance(link, str) and link.startswith(("http://", "https://", "/")) else None


def attempt_view(row: Any, *, is_edge: bool) -> AttemptView:
    return AttemptView(
        id=row.id,
        delivery_id=row.delivery_id,
        event=row.event,
        kind=row.kind,
        attempt=row.attempt,
        sent_at=row.sent_at,
        duration_ms=row.duration_ms,
        response_code=row.response_code,
        error=row.error,
        request_url=row.request_url,
        request_headers=dict(row.request_headers or {}),
        payload=pretty(row.body),
        response_headers=dict(row.response_headers or {}),
        response_body=pretty(row.response_body),
        delivery_status=row.status,
        delivery_attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        deployment_url=_deployment_url(row.response_body) if is_edge else None,
    )
