"""Webhook event names, groups, formats and filters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stackcascade.domain.errors import InvalidInput
from stackcascade.domain.webhook_events import (
    DEPLOYMENT_EVENTS,
    EVENTS,
    GROUPS,
    OPERATION_EVENTS,
    ORG_ONLY_EVENTS,
    STACK_EVENTS,
    WebhookFormat,
    check_filters,
    check_groups,
    matches,
    parse_format,
    webhook_kind,
)

ALL_DESIGN_EVENTS = {
    "deployment_queued",
    "deployment_started",
    "deployment_succeeded",
    "deployment_failed",
    "update_succeeded",
    "update_failed",
    "preview_succeeded",
    "preview_failed",
    "refresh_succeeded",
    "refresh_failed",
    "destroy_succeeded",
    "destroy_failed",
    "stack_created",
    "stack_deleted",
}


def test_the_events_are_exactly_the_ones_the_design_names_without_repeats() -> None:
    assert set(EVENTS) == ALL_DESIGN_EVENTS
    assert len(EVENTS) == len(ALL_DESIGN_EVENTS)


def test_the_stacks_group_holds_stack_lifecycle_and_operation_results() -> None:
    assert set(GROUPS["stacks"]) == set(STACK_EVENTS) | set(OPERATION_EVENTS)


def test_the_deployments_group_holds_the_four_deployment_events() -> None:
    assert GROUPS["deployments"] == DEPLOYMENT_EVENTS


def test_every_event_is_in_exactly_one_group() -> None:
    for event in EVENTS:
        assert sum(event in members for members in GROUPS.values()) == 1, event


def test_only_stack_creation_and_deletion_are_organization_only() -> None:
    assert frozenset({"stack_created", "stack_deleted"}) == ORG_ONLY_EVENTS


# parse_format


@pytest.mark.parametrize("value", ["raw", "slack", "ms_teams", "pulumi_deployments"])
def test_each_pulumi_format_parses_to_itself(value: str) -> None:
    assert parse_format(value) == WebhookFormat(value)
    assert parse_format(value).value == value


def test_a_missing_format_means_raw() -> None:
    assert parse_format(None) is WebhookFormat.RAW


@pytest.mark.parametrize("value", ["json", "Slack", "teams", "", " raw"])
def test_an_unknown_format_is_refused_with_the_allowed_ones(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_format(value)
    assert repr(value) in caught.value.message
    assert "raw, slack, ms_teams, pulumi_deployments" in caught.value.message


@pytest.mark.parametrize("value", [1, ["raw"], {"format": "raw"}, True])
def test_a_format_that_is_not_a_string_is_refused(value: object) -> None:
    with pytest.raises(InvalidInput, match="must be a string"):
        parse_format(value)


# check_filters


def test_no_filters_is_an_empty_list() -> None:
    assert check_filters(None, stack_scoped=False) == []
    assert check_filters([], stack_scoped=True) == []


def test_known_filters_are_returned_in_order() -> None:
    value = ["update_failed", "deployment_queued", "stack_created"]
    assert check_filters(value, stack_scoped=False) == value


def test_duplicate_filters_are_dropped_keeping_the_first_occurrence() -> None:
    value = ["update_failed", "deployment_queued", "update_failed", "deployment_queued", "preview_failed"]
    assert check_filters(value, stack_scoped=False) == ["update_failed", "deployment_queued", "preview_failed"]


def test_check_filters_does_not_modify_its_input() -> None:
    value = ["update_failed", "update_failed"]
    check_filters(value, stack_scoped=False)
    assert value == ["update_failed", "update_failed"]


def test_an_unknown_filter_is_named_and_the_valid_ones_listed() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_filters(["update_failed", "update_started"], stack_scoped=False)
    message = caught.value.message
    assert "unknown webhook filter 'update_started'" in message
    for event in EVENTS:
        assert event in message


def test_every_unknown_filter_is_named_at_once() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_filters(["nope", "drift_detected", "update_failed"], stack_scoped=False)
    assert "unknown webhook filters 'nope', 'drift_detected'" in caught.value.message


def test_a_long_list_of_unknown_filters_or_groups_is_named_briefly() -> None:
    names = [f"x{i}" for i in range(20_000)]
    for check in (lambda: check_filters(names, stack_scoped=False), lambda: check_groups(names)):
        with pytest.raises(InvalidInput) as caught:
            check()
        message = caught.value.message
        assert "'x0', 'x1'" in message and "'x9' and 19990 more" in message and "'x10'" not in message
        assert len(message) < 600
    with pytest.raises(InvalidInput) as caught:
        check_filters(["y" * 5000], stack_scoped=False)
    assert len(caught.value.message) < 600 and "yyy..." in caught.value.message


@pytest.mark.parametrize("name", ["drift_detected", "policy_violation_mandatory", "refresh failed", "UPDATE_FAILED"])
def test_pulumi_filters_stackcascade_never_emits_are_unknown(name: str) -> None:
    with pytest.raises(InvalidInput, match="unknown webhook filter"):
        check_filters([name], stack_scoped=False)


@pytest.mark.parametrize("name", ["stack_created", "stack_deleted"])
def test_stack_lifecycle_filters_are_refused_on_a_stack_webhook(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_filters(["update_failed", name], stack_scoped=True)
    assert repr(name) in caught.value.message
    assert "only be used on organization webhooks" in caught.value.message


@pytest.mark.parametrize("name", ["stack_created", "stack_deleted"])
def test_stack_lifecycle_filters_are_fine_on_an_organization_webhook(name: str) -> None:
    assert check_filters([name], stack_scoped=False) == [name]


@pytest.mark.parametrize("value", ["update_failed", {"update_failed": True}, ("update_failed",), 3])
def test_filters_that_are_not_a_list_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput, match="'filters' must be a list of event names"):
        check_filters(value, stack_scoped=False)


def test_a_filter_that_is_not_a_string_is_refused_and_shown() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_filters(["update_failed", 7], stack_scoped=False)
    assert "7 is not a string" in caught.value.message


@given(st.lists(st.sampled_from(EVENTS)))
def test_filters_come_back_unique_in_first_seen_order(value: list[str]) -> None:
    result = check_filters(value, stack_scoped=False)
    assert len(result) == len(set(result))
    assert set(result) == set(value)
    assert result == sorted(result, key=value.index)


# check_groups


def test_no_groups_is_an_empty_list() -> None:
    assert check_groups(None) == []


def test_known_groups_are_returned_without_duplicates() -> None:
    assert check_groups(["deployments", "stacks", "deployments"]) == ["deployments", "stacks"]


def test_an_unknown_group_is_named_and_the_valid_ones_listed() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_groups(["stacks", "environments"])
    assert "unknown webhook group 'environments'" in caught.value.message
    assert "stacks, deployments" in caught.value.message


def test_groups_that_are_not_a_list_of_strings_are_refused() -> None:
    with pytest.raises(InvalidInput, match="'groups' must be a list"):
        check_groups("stacks")
    with pytest.raises(InvalidInput, match="is not a string"):
        check_groups([None])


# matches


@pytest.mark.parametrize("event", EVENTS)
def test_an_organization_webhook_without_filters_or_groups_receives_everything(event: str) -> None:
    assert matches([], [], event, stack_scoped=False)


@pytest.mark.parametrize("event", EVENTS)
def test_a_stack_webhook_without_filters_receives_all_but_stack_lifecycle(event: str) -> None:
    assert matches([], [], event, stack_scoped=True) is (event not in ORG_ONLY_EVENTS)


def test_a_filter_selects_its_event_only() -> None:
    assert matches(["update_failed"], [], "update_failed", stack_scoped=False)
    assert not matches(["update_failed"], [], "update_succeeded", stack_scoped=False)


def test_a_group_selects_its_members_only() -> None:
    assert matches([], ["deployments"], "deployment_started", stack_scoped=False)
    assert not matches([], ["deployments"], "update_succeeded", stack_scoped=False)
    assert matches([], ["stacks"], "stack_deleted", stack_scoped=False)


def test_filters_and_groups_add_up() -> None:
    filters, groups = ["update_failed"], ["deployments"]
    assert matches(filters, groups, "update_failed", stack_scoped=False)
    assert matches(filters, groups, "deployment_failed", stack_scoped=False)
    assert not matches(filters, groups, "preview_failed", stack_scoped=False)


def test_a_stack_webhook_in_the_stacks_group_still_never_hears_of_stack_lifecycle() -> None:
    assert not matches([], ["stacks"], "stack_created", stack_scoped=True)
    assert matches([], ["stacks"], "update_succeeded", stack_scoped=True)


def test_a_group_stored_before_it_was_removed_matches_nothing_instead_of_failing() -> None:
    assert not matches([], ["environments"], "update_failed", stack_scoped=False)


def test_matches_accepts_any_iterable() -> None:
    assert matches(iter(["update_failed"]), iter(()), "update_failed", stack_scoped=False)


@given(
    st.lists(st.sampled_from(EVENTS)),
    st.lists(st.sampled_from(sorted(GROUPS))),
    st.sampled_from(EVENTS),
    st.booleans(),
)
def test_matches_is_the_union_of_filters_and_groups(
    filters: list[str], groups: list[str], event: str, stack_scoped: bool
) -> None:
    selected = set(filters).union(*(GROUPS[g] for g in groups)) if filters or groups else set(EVENTS)
    if stack_scoped:
        selected -= ORG_ONLY_EVENTS
    assert matches(filters, groups, event, stack_scoped=stack_scoped) is (event in selected)


# webhook_kind


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ("stack_created", "stack"),
        ("stack_deleted", "stack"),
        ("preview_succeeded", "stack_preview"),
        ("preview_failed", "stack_preview"),
        ("update_succeeded", "stack_update"),
        ("update_failed", "stack_update"),
        ("refresh_succeeded", "stack_update"),
        ("refresh_failed", "stack_update"),
        ("destroy_succeeded", "stack_update"),
        ("destroy_failed", "stack_update"),
        ("deployment_queued", "deployment"),
        ("deployment_started", "deployment"),
        ("deployment_succeeded", "deployment"),
        ("deployment_failed", "deployment"),
        ("ping", "ping"),
    ],
)
def test_webhook_kind_is_pulumis_event_kind(event: str, kind: str) -> None:
    assert webhook_kind(event) == kind


def test_every_event_has_a_webhook_kind() -> None:
    assert {webhook_kind(e) for e in EVENTS} == {"stack", "stack_preview", "stack_update", "deployment"}


def test_an_unknown_event_has_no_webhook_kind() -> None:
    with pytest.raises(ValueError, match="no webhook kind"):
        webhook_kind("drift_detected")
