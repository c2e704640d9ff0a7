"""Who may do what: Principal.role_in / require / may_grant and parse_role (design section 7)."""

from __future__ import annotations

import pytest

from stackcascade.domain.errors import Forbidden, InvalidInput, NotFound
from stackcascade.domain.roles import Principal, Role, TokenKind, parse_role

ADMIN = Principal("t-admin", "root", TokenKind.ADMIN)
RUNNER = Principal("t-runner", "runner-1", TokenKind.RUNNER)
DEPLOYMENT = Principal("t-dep", "deployment", TokenKind.DEPLOYMENT, org="acme")


def org_token(role: Role, org: str = "acme") -> Principal:
    return Principal(f"t-{role}", f"{org}-{role}", TokenKind.ORG, org=org, role=role)


@pytest.mark.parametrize("value", ["admin", "member", "viewer"])
def test_parse_role_accepts_the_three_roles(value: str) -> None:
    assert parse_role(value) is Role(value)


@pytest.mark.parametrize("value", ["owner", "Admin", "", None, 1])
def test_parse_role_refuses_anything_else_naming_the_choices(value: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_role(value)
    assert "admin, member or viewer" in caught.value.message


def test_the_admin_token_is_admin_in_every_org() -> None:
    assert ADMIN.is_admin
    assert ADMIN.role_in("acme") is Role.ADMIN
    assert ADMIN.role_in("any-other") is Role.ADMIN
    ADMIN.require("whatever", Role.ADMIN, "organization 'whatever'")


def test_an_org_token_has_its_role_only_in_its_own_org() -> None:
    viewer = org_token(Role.VIEWER)
    assert not viewer.is_admin
    assert viewer.role_in("acme") is Role.VIEWER
    assert viewer.role_in("other") is None
    assert viewer.role_in("ACME") is None  # org names are exact


@pytest.mark.parametrize("principal", [RUNNER, DEPLOYMENT])
def test_runner_and_deployment_tokens_have_no_role_anywhere(principal: Principal) -> None:
    assert principal.role_in("acme") is None
    with pytest.raises(NotFound):
        principal.require("acme", Role.VIEWER, "stack acme/p/s")


@pytest.mark.parametrize(
    ("role", "needed", "allowed"),
    [
        (Role.VIEWER, Role.VIEWER, True),
        (Role.VIEWER, Role.MEMBER, False),
        (Role.VIEWER, Role.ADMIN, False),
        (Role.MEMBER, Role.VIEWER, True),
        (Role.MEMBER, Role.MEMBER, True),
        (Role.MEMBER, Role.ADMIN, False),
        (Role.ADMIN, Role.VIEWER, True),
        (Role.ADMIN, Role.MEMBER, True),
        (Role.ADMIN, Role.ADMIN, True),
    ],
)
def test_require_compares_role_ranks(role: Role, needed: Role, allowed: bool) -> None:
    principal = org_token(role)
    if allowed:
        principal.require("acme", needed, "stack acme/p/s")
    else:
        with pytest.raises(Forbidden) as caught:
            principal.require("acme", needed, "stack acme/p/s")
        assert caught.value.status_code == 403
        assert caught.value.message == f"role {role.value} in organization 'acme' may not do this: needs {needed.value}"


def test_require_answers_not_found_for_another_org_even_for_an_org_admin() -> None:
    with pytest.raises(NotFound) as caught:
        org_token(Role.ADMIN).require("other", Role.VIEWER, "stack other/p/s")
    assert caught.value.status_code == 404
    assert caught.value.message == "stack other/p/s not found"


def test_an_org_admin_may_grant_any_role_in_its_own_org_only() -> None:
    owner = org_token(Role.ADMIN)
    for role in Role:
        assert owner.may_grant("acme", role)
        assert not owner.may_grant("other", role)


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
def test_members_and_viewers_may_grant_nothing(role: Role) -> None:
    principal = org_token(role)
    assert not any(principal.may_grant("acme", r) for r in Role)


def test_the_admin_token_may_grant_anything_anywhere() -> None:
    assert all(ADMIN.may_grant(org, role) for org in ("acme", "other") for role in Role)


def test_runner_tokens_may_grant_nothing() -> None:
    assert not any(RUNNER.may_grant("acme", r) for r in Role)
