"""Name rules for organizations, projects and stacks (design section 2)."""

from __future__ import annotations

import pytest

from stackcascade.domain.errors import InvalidInput
from stackcascade.domain.names import RULE, check_name, check_stack_ref


@pytest.mark.parametrize(
    "name",
    ["a", "A", "0", "web-app", "web_app", "web.app", "v1.2.3", "UPPER-lower_09", "x" * 100, "a.", "-lead", "_lead"],
)
def test_valid_names_are_returned_unchanged(name: str) -> None:
    assert check_name("stack", name) == name


@pytest.mark.parametrize(
    "name",
    ["", "x" * 101, "has space", "slash/inside", "colon:inside", "tilde~", "é", "tab\tinside", "new\nline", "a\x00b"],
)
def test_names_outside_the_alphabet_or_length_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_name("project", name)
    assert RULE in caught.value.message
    assert "project" in caught.value.message


def test_trailing_newline_does_not_slip_past_the_pattern() -> None:
    with pytest.raises(InvalidInput):
        check_name("stack", "prod\n")


@pytest.mark.parametrize("value", [None, 12, 1.5, ["a"], {"a": 1}, b"bytes"])
def test_a_name_that_is_not_a_string_is_refused(value: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_name("stack", value)
    assert RULE in caught.value.message


@pytest.mark.parametrize("kind", ["project", "stack"])
def test_project_and_stack_names_may_not_start_with_a_dot(kind: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_name(kind, ".hidden")
    assert caught.value.message == f"invalid {kind} name '.hidden': a {kind} name may not start with '.'"


def test_a_dot_is_fine_after_the_first_character() -> None:
    assert check_name("stack", "prod.eu") == "prod.eu"


def test_organization_names_may_start_with_a_dot_when_allowed() -> None:
    assert check_name("organization", ".org", may_start_with_dot=True) == ".org"


def test_check_stack_ref_allows_a_dotted_org_but_not_a_dotted_project_or_stack() -> None:
    assert check_stack_ref(".org", "proj", "dev") == (".org", "proj", "dev")
    with pytest.raises(InvalidInput, match="project name"):
        check_stack_ref("org", ".proj", "dev")
    with pytest.raises(InvalidInput, match="stack name"):
        check_stack_ref("org", "proj", ".dev")


def test_check_stack_ref_names_the_part_that_is_wrong() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_stack_ref("bad org", "proj", "dev")
    assert caught.value.message.startswith("invalid organization name 'bad org'")
    assert caught.value.status_code == 400


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_segments_are_never_names_not_even_for_organizations(name: str) -> None:
    with pytest.raises(InvalidInput, match="path segments"):
        check_name("organization", name, may_start_with_dot=True)
