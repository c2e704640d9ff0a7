"""Webhook bodies: Pulumi's raw payloads, Slack messages and Teams cards."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stackcascade.domain.webhook_events import EVENTS, WebhookFormat
from stackcascade.domain.webhook_payloads import (
    GREEN,
    GREY,
    PING_MESSAGE,
    RED,
    EventView,
    deployment_url,
    ping,
    render,
    stack_url,
)

CONSOLE = "http://127.0.0.1:8080"
WHEN = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
HTTP_FORMATS = (WebhookFormat.RAW, WebhookFormat.SLACK, WebhookFormat.MS_TEAMS)
PULUMI_USER_KEYS = {"name", "githubLogin", "avatarUrl"}


def stack_event(kind: str = "stack_created", *, requested_by: str | None = "alice") -> EventView:
    payload: dict[str, Any] = {"organization": "acme", "projectName": "network", "stackName": "prod"}
    if requested_by is not None:
        payload["requestedBy"] = requested_by
    return EventView(kind, "acme", "network", "prod", payload, WHEN)


def deployment_event(kind: str, operation: str = "update", status: str = "succeeded", **extra: Any) -> EventView:
    payload: dict[str, Any] = {
        "deploymentId": "d-123",
        "version": 7,
        "operation": operation,
        "status": status,
        "initiator": "api",
        "requestedBy": "alice",
        "stack": {"organization": "acme", "projectName": "network", "stackName": "prod"},
        **extra,
    }
    return EventView(kind, "acme", "network", "prod", payload, WHEN)


def some_event(kind: str) -> EventView:
    if kind.startswith("stack_"):
        return stack_event(kind)
    operation = kind.rsplit("_", 1)[0]
    if operation == "deployment":
        operation = "update"
    return deployment_event(kind, operation=operation, status=kind.rsplit("_", 1)[1])


# links


def test_links_point_at_the_console_without_a_double_slash() -> None:
    assert stack_url(CONSOLE + "/", "acme", "network", "prod") == "http://127.0.0.1:8080/acme/network/prod"
    assert (
        deployment_url(CONSOLE, "acme", "network", "prod", 7) == "http://127.0.0.1:8080/acme/network/prod/deployments/7"
    )


def test_link_segments_are_percent_encoded() -> None:
    assert stack_url(CONSOLE, "a/b", "p q", "s?") == "http://127.0.0.1:8080/a%2Fb/p%20q/s%3F"


def test_a_console_under_a_path_keeps_its_path() -> None:
    assert stack_url("https://ops.example.com/cascade/", "acme", "n", "p") == "https://ops.example.com/cascade/acme/n/p"


# raw: Pulumi's shapes


def test_raw_stack_created_is_pulumis_stack_payload() -> None:
    assert render(WebhookFormat.RAW, stack_event("stack_created"), CONSOLE) == {
        "user": {"name": "alice", "githubLogin": "alice", "avatarUrl": ""},
        "organization": {"name": "acme", "githubLogin": "acme", "avatarUrl": ""},
        "action": "created",
        "projectName": "network",
        "stackName": "prod",
    }


def test_raw_stack_deleted_says_deleted() -> None:
    assert render(WebhookFormat.RAW, stack_event("stack_deleted"), CONSOLE)["action"] == "deleted"


def test_raw_leaves_out_the_user_when_nobody_is_named() -> None:
    body = render(WebhookFormat.RAW, stack_event(requested_by=None), CONSOLE)
    assert "user" not in body
    assert body["organization"]["name"] == "acme"


def test_raw_update_is_pulumis_stack_update_payload_plus_our_ids() -> None:
    event = deployment_event("update_succeeded", resourceChanges={"create": 2, "update-replace": 1}, cascadeId="c-9")
    assert render(WebhookFormat.RAW, event, CONSOLE) == {
        "user": {"name": "alice", "githubLogin": "alice", "avatarUrl": ""},
        "organization": {"name": "acme", "githubLogin": "acme", "avatarUrl": ""},
        "projectName": "network",
        "stackName": "prod",
        "updateUrl": "http://127.0.0.1:8080/acme/network/prod/deployments/7",
        "kind": "update",
        "result": "succeeded",
        "resourceChanges": {"create": 2, "update-replace": 1},
        "isPreview": False,
        "deploymentId": "d-123",
        "cascadeId": "c-9",
    }


def external_event(kind: str = "update_succeeded", **extra: Any) -> EventView:
    """An update reported from outside (``POST .../events``): no deployment, so no version or id."""
    operation, _, status = kind.rpartition("_")
    payload: dict[str, Any] = {
        "stack": {"organization": "acme", "projectName": "network", "stackName": "prod"},
        "operation": operation,
        "status": status,
        "initiator": "external",
        "requestedBy": "ci",
        **extra,
    }
    return EventView(kind, "acme", "network", "prod", payload, WHEN)


def test_raw_external_update_links_to_the_stack_page_it_has_no_deployment_page() -> None:
    event = external_event(resourceChanges={"create": 2}, cascadeId="c-9")
    assert render(WebhookFormat.RAW, event, CONSOLE) == {
        "user": {"name": "ci", "githubLogin": "ci", "avatarUrl": ""},
        "organization": {"name": "acme", "githubLogin": "acme", "avatarUrl": ""},
        "projectName": "network",
        "stackName": "prod",
        "updateUrl": "http://127.0.0.1:8080/acme/network/prod",
        "kind": "update",
        "result": "succeeded",
        "resourceChanges": {"create": 2},
        "isPreview": False,
        "cascadeId": "c-9",
    }


@pytest.mark.parametrize("kind", ["update_succeeded", "update_failed", "preview_succeeded", "destroy_failed"])
@pytest.mark.parametrize("fmt", HTTP_FORMATS)
def test_no_format_links_an_external_update_to_a_deployment_that_does_not_exist(fmt: WebhookFormat, kind: str) -> None:
    text = json.dumps(render(fmt, external_event(kind), CONSOLE))
    assert "None" not in text and "/deployments/" not in text
    assert "http://127.0.0.1:8080/acme/network/prod" in text


@pytest.mark.parametrize("operation", ["refresh", "destroy"])
def test_raw_refresh_and_destroy_report_their_operation_as_kind(operation: str) -> None:
    body = render(
        WebhookFormat.RAW, deployment_event(f"{operation}_failed", operation, "failed", reason="boom"), CONSOLE
    )
    assert body["kind"] == operation
    assert body["result"] == "failed"
    assert body["isPreview"] is False
    assert body["reason"] == "boom"


def test_raw_preview_is_an_update_with_is_preview_true_as_in_pulumi() -> None:
    body = render(WebhookFormat.RAW, deployment_event("preview_failed", "preview", "failed"), CONSOLE)
    assert body["kind"] == "update"
    assert body["isPreview"] is True
    assert body["result"] == "failed"


def test_raw_update_without_resource_changes_reports_none_rather_than_omitting_the_field() -> None:
    body = render(WebhookFormat.RAW, deployment_event("update_failed", status="failed"), CONSOLE)
    assert body["resourceChanges"] == {}
    assert "cascadeId" not in body
    assert "reason" not in body


def test_raw_resource_changes_keep_only_counts() -> None:
    event = deployment_event("update_succeeded", resourceChanges={"create": 1, "same": "x", "delete": True})
    assert render(WebhookFormat.RAW, event, CONSOLE)["resourceChanges"] == {"create": 1}


def test_raw_deployment_is_pulumis_deployment_payload_plus_our_fields() -> None:
    event = deployment_event("deployment_queued", status="not-started", cascadeId="c-9")
    assert render(WebhookFormat.RAW, event, CONSOLE) == {
        "user": {"name": "alice", "githubLogin": "alice", "avatarUrl": ""},
        "organization": {"name": "acme", "githubLogin": "acme", "avatarUrl": ""},
        "projectName": "network",
        "stackName": "prod",
        "deploymentUrl": "http://127.0.0.1:8080/acme/network/prod/deployments/7",
        "version": 7,
        "operation": "update",
        "status": "not-started",
        "deploymentId": "d-123",
        "initiator": "api",
        "cascadeId": "c-9",
    }


def test_raw_takes_project_and_stack_from_the_payload_when_the_event_lacks_them() -> None:
    event = deployment_event("deployment_started", status="running")
    event = EventView(event.kind, event.org, None, None, event.payload, event.created_at)
    body = render(WebhookFormat.RAW, event, CONSOLE)
    assert (body["projectName"], body["stackName"]) == ("network", "prod")
    assert body["deploymentUrl"].endswith("/acme/network/prod/deployments/7")


@pytest.mark.parametrize("kind", EVENTS)
def test_raw_bodies_always_carry_pulumis_common_fields(kind: str) -> None:
    body = render(WebhookFormat.RAW, some_event(kind), CONSOLE)
    assert set(body["organization"]) == PULUMI_USER_KEYS
    assert set(body["user"]) == PULUMI_USER_KEYS
    assert body["projectName"] == "network"
    assert body["stackName"] == "prod"


# slack


def test_slack_message_has_a_fallback_text_a_linked_section_and_a_context() -> None:
    body = render(WebhookFormat.SLACK, deployment_event("update_succeeded"), CONSOLE)
    assert body["text"] == "acme/network/prod: update succeeded"
    section, context = body["blocks"]
    assert section["type"] == "section"
    assert section["text"]["type"] == "mrkdwn"
    assert "<http://127.0.0.1:8080/acme/network/prod/deployments/7|acme/network/prod>" in section["text"]["text"]
    assert ":white_check_mark:" in section["text"]["text"]
    assert context["type"] == "context"
    line = context["elements"][0]["text"]
    assert "*acme*" in line
    assert "*alice*" in line
    assert "<!date^1700000000^{date_short_pretty} {time}|2023-11-14 22:13 UTC>" in line


def test_slack_deployment_names_its_version_and_operation() -> None:
    body = render(WebhookFormat.SLACK, deployment_event("deployment_queued", "destroy", "not-started"), CONSOLE)
    assert body["text"] == "acme/network/prod: deployment #7 (destroy) queued"


def test_slack_stack_created_links_to_the_stack() -> None:
    body = render(WebhookFormat.SLACK, stack_event("stack_created"), CONSOLE)
    assert "<http://127.0.0.1:8080/acme/network/prod|acme/network/prod>" in body["blocks"][0]["text"]["text"]


def test_slack_stack_deleted_links_to_the_organization_since_the_stack_is_gone() -> None:
    body = render(WebhookFormat.SLACK, stack_event("stack_deleted"), CONSOLE)
    assert "<http://127.0.0.1:8080/acme|acme/network/prod>" in body["blocks"][0]["text"]["text"]


def test_slack_failure_shows_the_reason_escaped() -> None:
    event = deployment_event("update_failed", status="failed", reason="exit <1> & <!channel>")
    text = render(WebhookFormat.SLACK, event, CONSOLE)["blocks"][0]["text"]["text"]
    assert ":x:" in text
    assert "exit &lt;1&gt; &amp; &lt;!channel&gt;" in text
    assert "<!channel>" not in text


def test_slack_requested_by_is_escaped_too() -> None:
    event = deployment_event("update_succeeded")
    payload = dict(event.payload, requestedBy="<@U123>")
    body = render(WebhookFormat.SLACK, EventView(event.kind, "acme", "network", "prod", payload, WHEN), CONSOLE)
    assert "&lt;@U123&gt;" in body["blocks"][1]["elements"][0]["text"]


# ms_teams


def test_teams_card_is_a_message_card_with_facts_and_a_link() -> None:
    event = deployment_event("update_succeeded", resourceChanges={"update": 3, "create": 1})
    card = render(WebhookFormat.MS_TEAMS, event, CONSOLE)
    assert card["@type"] == "MessageCard"
    assert card["@context"] == "https://schema.org/extensions"
    assert card["summary"] == card["title"] == "acme/network/prod: update succeeded"
    assert card["themeColor"] == GREEN
    facts = {f["name"]: f["value"] for f in card["sections"][0]["facts"]}
    assert facts["Organization"] == "acme"
    assert facts["Project"] == "network"
    assert facts["Stack"] == "prod"
    assert facts["Operation"] == "update"
    assert facts["Status"] == "succeeded"
    assert facts["Resource changes"] == "create: 1, update: 3"
    assert facts["Requested by"] == "alice"
    assert facts["Time"] == "2023-11-14 22:13:20 UTC"
    (action,) = card["potentialAction"]
    assert action["@type"] == "OpenUri"
    assert action["targets"] == [{"os": "default", "uri": "http://127.0.0.1:8080/acme/network/prod/deployments/7"}]


@pytest.mark.parametrize(
    ("event", "color"),
    [
        (deployment_event("update_failed", status="failed"), RED),
        (deployment_event("deployment_failed", status="failed"), RED),
        (deployment_event("deployment_succeeded"), GREEN),
        (deployment_event("deployment_queued", status="not-started"), GREY),
        (deployment_event("deployment_started", status="running"), GREY),
        (stack_event("stack_created"), GREY),
        (stack_event("stack_deleted"), GREY),
    ],
)
def test_teams_card_color_follows_the_outcome(event: EventView, color: str) -> None:
    assert render(WebhookFormat.MS_TEAMS, event, CONSOLE)["themeColor"] == color


def test_teams_stack_event_has_no_operation_facts() -> None:
    card = render(WebhookFormat.MS_TEAMS, stack_event("stack_created"), CONSOLE)
    names = [f["name"] for f in card["sections"][0]["facts"]]
    assert "Operation" not in names
    assert "Status" not in names


def test_teams_failure_shows_the_reason() -> None:
    card = render(
        WebhookFormat.MS_TEAMS, deployment_event("update_failed", status="failed", reason="runner lost"), CONSOLE
    )
    assert {"name": "Reason", "value": "runner lost"} in card["sections"][0]["facts"]


# all formats


def test_pulumi_deployments_has_no_http_body() -> None:
    with pytest.raises(ValueError, match="pulumi_deployments"):
        render(WebhookFormat.PULUMI_DEPLOYMENTS, stack_event(), CONSOLE)
    with pytest.raises(ValueError, match="pulumi_deployments"):
        ping(WebhookFormat.PULUMI_DEPLOYMENTS, "acme", "network", "prod", CONSOLE)


@pytest.mark.parametrize("fmt", HTTP_FORMATS)
def test_an_unknown_event_kind_is_a_bug_not_a_body(fmt: WebhookFormat) -> None:
    with pytest.raises(ValueError, match="no webhook kind"):
        render(fmt, EventView("drift_detected", "acme", "network", "prod", {}, WHEN), CONSOLE)


@pytest.mark.parametrize("fmt", HTTP_FORMATS)
@pytest.mark.parametrize("kind", EVENTS)
def test_every_event_renders_to_json_in_every_format(fmt: WebhookFormat, kind: str) -> None:
    body = render(fmt, some_event(kind), CONSOLE)
    assert json.loads(json.dumps(body)) == body


SECRETISH = st.text(min_size=1, max_size=20, alphabet=st.characters(categories=("Lu", "Ll", "Nd"))).map(
    lambda text: f"SeCrEt-{text}"
)


@given(kind=st.sampled_from(EVENTS), fmt=st.sampled_from(HTTP_FORMATS), secret=SECRETISH)
def test_payload_fields_outside_the_known_ones_never_reach_a_body(kind: str, fmt: WebhookFormat, secret: str) -> None:
    event = some_event(kind)
    payload = dict(event.payload, environmentVariables={"TOKEN": secret}, secret=secret, sealed=secret)
    body = render(fmt, EventView(event.kind, event.org, event.project, event.stack, payload, WHEN), CONSOLE)
    assert secret not in json.dumps(body)


# ping


def test_raw_ping_is_pulumis_ping_body() -> None:
    assert ping(WebhookFormat.RAW, "acme", "network", "prod", CONSOLE, timestamp=WHEN + 0.9) == {
        "timestamp": 1_700_000_000,
        "message": PING_MESSAGE,
    }


def test_raw_ping_without_a_timestamp_has_only_the_message() -> None:
    assert ping(WebhookFormat.RAW, "acme", None, None, CONSOLE) == {"message": PING_MESSAGE}


def test_slack_ping_links_the_stack() -> None:
    body = ping(WebhookFormat.SLACK, "acme", "network", "prod", CONSOLE)
    assert PING_MESSAGE in body["text"]
    assert "<http://127.0.0.1:8080/acme/network/prod|acme/network/prod>" in body["blocks"][0]["text"]["text"]


def test_an_organization_ping_links_the_organization() -> None:
    body = ping(WebhookFormat.SLACK, "acme", None, None, CONSOLE)
    assert "<http://127.0.0.1:8080/acme|acme>" in body["blocks"][0]["text"]["text"]


def test_teams_ping_is_a_grey_card() -> None:
    card = ping(WebhookFormat.MS_TEAMS, "acme", "network", "prod", CONSOLE)
    assert card["@type"] == "MessageCard"
    assert card["themeColor"] == GREY
    assert PING_MESSAGE in card["title"]
    assert card["potentialAction"][0]["targets"][0]["uri"] == "http://127.0.0.1:8080/acme/network/prod"
