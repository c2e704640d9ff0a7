"""Webhook request bodies: Pulumi's JSON (``raw``), Slack messages and Microsoft Teams cards.

``raw`` bodies keep the field names of Pulumi Cloud's documented payloads
(https://www.pulumi.com/docs/deployments/concepts/webhooks/#payload-examples) so receivers written
for Pulumi keep working; links point at this server's console instead of app.pulumi.com. What
differs, and why:

* ``user`` and ``organization`` are Pulumi's objects, but stackcascade knows only names: ``name``
  and ``githubLogin`` both carry the name and ``avatarUrl`` is empty. ``user`` is left out when the
  event names nobody, which Pulumi's documentation allows ("It may also contain the user").
* ``stack_update``/``stack_preview`` bodies usually come from a deployment, so ``updateUrl`` is the
  deployment's page; an update reported from outside (``POST .../events``) has no deployment here,
  so its ``updateUrl`` (and the Slack and Teams link) is the stack's page. A preview has ``kind``
  ``update`` and ``isPreview`` true, as in Pulumi.
* Added fields that Pulumi does not send: ``deploymentId`` (every deployment-backed body), and,
  when the deployment has them, ``cascadeId`` (the cascade that started it), ``reason`` (why it
  failed or was skipped) and, on ``deployment`` bodies, ``initiator``.

Bodies carry names, counts and links only: the events they are made from hold no secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from stackcascade.domain.webhook_events import WebhookFormat, webhook_kind

PING_MESSAGE: Final = "🍹 Just a friendly ping from stackcascade 🍹"

GREEN: Final = "2EB67D"
RED: Final = "E01E5A"
GREY: Final = "808080"

_EMOJI: Final = {
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "queued": ":hourglass_flowing_sand:",
    "started": ":arrow_forward:",
    "created": ":new:",
    "deleted": ":wastebasket:",
}


@dataclass(frozen=True, slots=True)
class EventView:
    """One outbox event as the webhook layer reads it."""

    kind: str
    org: str
    project: str | None
    stack: str | None
    payload: Mapping[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class _Facts:
    """What every format says about an event, worked out once."""

    org: str
    project: str | None
    stack: str | None
    outcome: str  # the event's last word: succeeded, failed, queued, started, created, deleted
    headline: str  # e.g. "update succeeded" or "deployment #7 (update) queued"
    url: str
    requested_by: str | None


def _segment(name: str) -> str:
    return quote(name, safe="")


def org_url(console_url: str, org: str) -> str:
    return f"{console_url.rstrip('/')}/{_segment(org)}"


def stack_url(console_url: str, org: str, project: str, stack: str) -> str:
    return f"{org_url(console_url, org)}/{_segment(project)}/{_segment(stack)}"


def deployment_url(console_url: str, org: str, project: str, stack: str, version: object) -> str:
    return f"{stack_url(console_url, org, project, stack)}/deployments/{_segment(str(version))}"


def _ref(org: str, project: str | None, stack: str | None) -> str:
    return "/".join(part for part in (org, project, stack) if part)


def _stack_names(event: EventView) -> tuple[str, str | None, str | None]:
    """Org, project and stack: the event's columns, else the payload's ``stack`` object or fields."""
    nested = event.payload.get("stack")
    source: Mapping[str, Any] = nested if isinstance(nested, Mapping) else event.payload
    project = event.project or source.get("projectName")
    stack = event.stack or source.get("stackName")
    return (
        event.org,
        project if isinstance(project, str) else None,
        stack if isinstance(stack, str) else None,
    )


def _facts(event: EventView, console_url: str) -> _Facts:
    kind = webhook_kind(event.kind)  # raises ValueError for an event we do not know
    org, project, stack = _stack_names(event)
    outcome = event.kind.rsplit("_", 1)[1]
    requested_by = event.payload.get("requestedBy")
    requested = requested_by if isinstance(requested_by, str) and requested_by else None
    if kind == "deployment":
        version = event.payload.get("version")
        operation = event.payload.get("operation", "deployment")
        headline = f"deployment #{version} ({operation}) {outcome}"
    else:
        headline = event.kind.replace("_", " ")
    if project is None or stack is None or event.kind == "stack_deleted":
        url = org_url(console_url, org)  # a deleted stack has no page left to show
    elif kind == "stack" or event.payload.get("version") is None:
        url = stack_url(console_url, org, project, stack)  # an update reported from outside has no deployment
    else:
        url = deployment_url(console_url, org, project, stack, event.payload.get("version"))
    return _Facts(org, project, stack, outcome, headline, url, requested)


def _named(name: str) -> dict[str, str]:
    """Pulumi's user/organization object, from the only thing stackcascade knows: a name."""
    return {"name": name, "githubLogin": name, "avatarUrl": ""}


def _changes(payload: Mapping[str, Any]) -> dict[str, int]:
    changes = payload.get("resourceChanges")
    if not isinstance(changes, Mapping):
        return {}
    return {str(op): count for op, count in changes.items() if isinstance(count, int) and not isinstance(count, bool)}


def _extras(payload: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {name: payload[name] for name in names if payload.get(name) is not None}


def _raw(event: EventView, console_url: str) -> dict[str, Any]:
    facts = _facts(event, console_url)
    kind = webhook_kind(event.kind)
    payload = event.payload
    body: dict[str, Any] = {}
    if facts.requested_by is not None:
        body["user"] = _named(facts.requested_by)
    body["organization"] = _named(facts.org)
    if kind == "stack":
        body["action"] = facts.outcome
    body["projectName"] = facts.project
    body["stackName"] = facts.stack
    if kind == "deployment":
        body["deploymentUrl"] = facts.url
        body["version"] = payload.get("version")
        body["operation"] = payload.get("operation")
        body["status"] = payload.get("status")
        body.update(_extras(payload, "deploymentId", "initiator", "cascadeId", "reason"))
    elif kind in ("stack_update", "stack_preview"):
        is_preview = kind == "stack_preview"
        body["updateUrl"] = facts.url
        body["kind"] = "update" if is_preview else event.kind.rsplit("_", 1)[0]
        body["result"] = facts.outcome
        body["resourceChanges"] = _changes(payload)
        body["isPreview"] = is_preview
        body.update(_extras(payload, "deploymentId", "cascadeId", "reason"))
    return body


def _slack_escape(text: str) -> str:
    """Slack's three control characters; everything else is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_time(ts: float) -> str:
    """A date Slack shows in the reader's time zone, with a UTC fallback for old clients."""
    fallback = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(ts)}^{{date_short_pretty}} {{time}}|{fallback}>"


def _slack(event: EventView, console_url: str) -> dict[str, Any]:
    facts = _facts(event, console_url)
    ref = _ref(facts.org, facts.project, facts.stack)
    emoji = _EMOJI.get(facts.outcome, ":information_source:")
    line = f"{emoji} *<{facts.url}|{_slack_escape(ref)}>*: {_slack_escape(facts.headline)}"
    reason = event.payload.get("reason")
    if isinstance(reason, str) and reason:
        line += f"\n>{_slack_escape(reason)}"
    context = [f"Organization *{_slack_escape(facts.org)}*"]
    if facts.requested_by is not None:
        context.append(f"requested by *{_slack_escape(facts.requested_by)}*")
    context.append(_slack_time(event.created_at))
    return {
        "text": f"{ref}: {facts.headline}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": line}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]},
        ],
    }


def _theme(outcome: str) -> str:
    return {"succeeded": GREEN, "failed": RED}.get(outcome, GREY)


def _card(title: str, color: str, facts: list[tuple[str, str]], url: str, link_name: str) -> dict[str, Any]:
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": title,
        "themeColor": color,
        "title": title,
        "sections": [{"facts": [{"name": name, "value": value} for name, value in facts], "markdown": False}],
        "potentialAction": [{"@type": "OpenUri", "name": link_name, "targets": [{"os": "default", "uri": url}]}],
    }


def _ms_teams(event: EventView, console_url: str) -> dict[str, Any]:
    facts = _facts(event, console_url)
    payload = event.payload
    rows: list[tuple[str, str]] = [("Organization", facts.org)]
    if facts.project is not None:
        rows.append(("Project", facts.project))
    if facts.stack is not None:
        rows.append(("Stack", facts.stack))
    if webhook_kind(event.kind) != "stack":
        rows.append(("Operation", str(payload.get("operation", ""))))
        rows.append(("Status", str(payload.get("status", facts.outcome))))
        changes = _changes(payload)
        if changes:
            rows.append(("Resource changes", ", ".join(f"{op}: {n}" for op, n in sorted(changes.items()))))
    if facts.requested_by is not None:
        rows.append(("Requested by", facts.requested_by))
    reason = payload.get("reason")
    if isinstance(reason, str) and reason:
        rows.append(("Reason", reason))
    rows.append(("Time", datetime.fromtimestamp(event.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")))
    title = f"{_ref(facts.org, facts.project, facts.stack)}: {facts.headline}"
    link = "View organization" if event.kind == "stack_deleted" else "View in stackcascade"
    return _card(title, _theme(facts.outcome), rows, facts.url, link)


def _not_http(fmt: WebhookFormat) -> ValueError:
    return ValueError(f"format {fmt.value!r} starts deployments; it has no HTTP body")


def render(fmt: WebhookFormat, event: EventView, console_url: str) -> dict[str, Any]:
    """The JSON body that a webhook of format ``fmt`` is sent for ``event``."""
    if fmt is WebhookFormat.RAW:
        return _raw(event, console_url)
    if fmt is WebhookFormat.SLACK:
        return _slack(event, console_url)
    if fmt is WebhookFormat.MS_TEAMS:
        return _ms_teams(event, console_url)
    raise _not_http(fmt)


def ping(
    fmt: WebhookFormat,
    org: str,
    project: str | None,
    stack: str | None,
    console_url: str,
    *,
    timestamp: float | None = None,
) -> dict[str, Any]:
    """The body of a test ping (``Pulumi-Webhook-Kind: ping``).

    ``raw`` is Pulumi's ping body, ``{"timestamp": <unix seconds>, "message": ...}``; the timestamp
    is left out when the caller gives none (the core reads no clock).
    """
    ref = _ref(org, project, stack)
    url = stack_url(console_url, org, project, stack) if project and stack else org_url(console_url, org)
    if fmt is WebhookFormat.RAW:
        body: dict[str, Any] = {} if timestamp is None else {"timestamp": int(timestamp)}
        body["message"] = PING_MESSAGE
        return body
    if fmt is WebhookFormat.SLACK:
        line = f"{PING_MESSAGE}: this webhook of *<{url}|{_slack_escape(ref)}>* works"
        return {
            "text": f"{PING_MESSAGE} ({ref})",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": line}}],
        }
    if fmt is WebhookFormat.MS_TEAMS:
        rows = [("Organization", org)]
        if project:
            rows.append(("Project", project))
        if stack:
            rows.append(("Stack", stack))
        return _card(f"{PING_MESSAGE} ({ref})", GREY, rows, url, "View in stackcascade")
    raise _not_http(fmt)
