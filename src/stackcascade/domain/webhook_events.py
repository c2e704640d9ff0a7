"""Webhook event names, groups, formats and filters: what a webhook subscribes to.

The names, groups and the ``Pulumi-Webhook-Kind`` values follow Pulumi Cloud's webhook
documentation (https://www.pulumi.com/docs/deployments/concepts/webhooks/#event-filtering), so a
subscription written for Pulumi means the same here. The differences: stackcascade emits no
``drift_*`` or ``policy_violation_*`` events, so those filters are refused as unknown and the
``deployments`` group holds only the four ``deployment_*`` events (Pulumi's also holds the
``drift_detection`` and ``drift_remediation`` kinds).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final

from stackcascade.domain.errors import InvalidInput

STACK_EVENTS: Final = ("stack_created", "stack_deleted")
DEPLOYMENT_EVENTS: Final = ("deployment_queued", "deployment_started", "deployment_succeeded", "deployment_failed")
OPERATION_EVENTS: Final = (
    "update_succeeded",
    "update_failed",
    "preview_succeeded",
    "preview_failed",
    "refresh_succeeded",
    "refresh_failed",
    "destroy_succeeded",
    "destroy_failed",
)
EVENTS: Final = STACK_EVENTS + OPERATION_EVENTS + DEPLOYMENT_EVENTS
"""Every event stackcascade emits, in the order the error messages list them."""

ORG_ONLY_EVENTS: Final = frozenset(STACK_EVENTS)
"""A stack webhook never hears of stacks being created or deleted, as in Pulumi."""

GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "stacks": STACK_EVENTS + OPERATION_EVENTS,
    "deployments": DEPLOYMENT_EVENTS,
}

PING: Final = "ping"

_KNOWN: Final = frozenset(EVENTS)


class WebhookFormat(StrEnum):
    """How a delivery's body is shaped; ``pulumi_deployments`` starts a deployment instead of posting."""

    RAW = "raw"
    SLACK = "slack"
    MS_TEAMS = "ms_teams"
    PULUMI_DEPLOYMENTS = "pulumi_deployments"


def parse_format(value: object) -> WebhookFormat:
    """Parse a webhook's ``format``; absent means ``raw``, as in Pulumi."""
    choices = ", ".join(f.value for f in WebhookFormat)
    if value is None:
        return WebhookFormat.RAW
    if not isinstance(value, str):
        raise InvalidInput(f"'format' must be a string: one of {choices}")
    try:
        return WebhookFormat(value)
    except ValueError:
        raise InvalidInput(f"unknown webhook format {value!r}: use one of {choices}") from None


def _names(field: str, value: object, what: str) -> list[str]:
    """``value`` as a list of strings without duplicates, first occurrence kept."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"'{field}' must be a list of {what} names")
    wrong = [item for item in value if not isinstance(item, str)]
    if wrong:
        raise InvalidInput(f"'{field}' must be a list of {what} names; {wrong[0]!r} is not a string")
    return list(dict.fromkeys(value))


_QUOTED_AT_MOST = 10  # an error message names a few of a long list, not all: it says what to fix, briefly


def _quoted(names: Iterable[str]) -> str:
    listed = list(dict.fromkeys(names))
    shown = ", ".join(repr(n if len(n) <= 80 else n[:80] + "...") for n in listed[:_QUOTED_AT_MOST])
    more = len(listed) - _QUOTED_AT_MOST
    return f"{shown} and {more} more" if more > 0 else shown


def check_filters(value: object, *, stack_scoped: bool) -> list[str]:
    """Validate a webhook's ``filters``: known event names, none that its scope can never receive."""
    filters = _names("filters", value, "event")
    unknown = [f for f in filters if f not in _KNOWN]
    if unknown:
        noun = "filter" if len(unknown) == 1 else "filters"
        raise InvalidInput(f"unknown webhook {noun} {_quoted(unknown)}: use any of {', '.join(EVENTS)}")
    if stack_scoped:
        org_only = [f for f in filters if f in ORG_ONLY_EVENTS]
        if org_only:
            raise InvalidInput(
                f"{_quoted(org_only)} can only be used on organization webhooks: a stack webhook never receives them"
            )
    return filters


def check_groups(value: object) -> list[str]:
    """Validate a webhook's ``groups``."""
    groups = _names("groups", value, "group")
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        noun = "group" if len(unknown) == 1 else "groups"
        raise InvalidInput(f"unknown webhook {noun} {_quoted(unknown)}: use any of {', '.join(GROUPS)}")
    return groups


def matches(filters: Iterable[str], groups: Iterable[str], event_kind: str, *, stack_scoped: bool) -> bool:
    """Whether a webhook with these ``filters`` and ``groups`` receives ``event_kind``.

    No filters and no groups means every event. Pings are sent on request and never pass through here.
    """
    if stack_scoped and event_kind in ORG_ONLY_EVENTS:
        return False
    filters = tuple(filters)
    groups = tuple(groups)
    if not filters and not groups:
        return True
    return event_kind in filters or any(event_kind in GROUPS.get(g, ()) for g in groups)


def webhook_kind(event_kind: str) -> str:
    """The ``Pulumi-Webhook-Kind`` header of a delivery of ``event_kind``."""
    if event_kind == PING:
        return "ping"
    if event_kind in STACK_EVENTS:
        return "stack"
    if event_kind in DEPLOYMENT_EVENTS:
        return "deployment"
    if event_kind in ("preview_succeeded", "preview_failed"):
        return "stack_preview"
    if event_kind in OPERATION_EVENTS:
        return "stack_update"
    raise ValueError(f"no webhook kind for event {event_kind!r}")
