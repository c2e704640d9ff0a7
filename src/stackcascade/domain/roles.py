"""Who may do what (design section 7)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from stackcascade.domain.errors import Forbidden, InvalidInput, NotFound


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class TokenKind(StrEnum):
    ADMIN = "admin"  # every org
    ORG = "org"  # one org, with a role
    RUNNER = "runner"  # the runner protocol only
    DEPLOYMENT = "deployment"  # short-lived, read outputs of one org


_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2}


def parse_role(value: object) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        raise InvalidInput(f"unknown role {value!r}: use admin, member or viewer") from None


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a token."""

    token_id: str
    name: str
    kind: TokenKind
    org: str | None = None
    role: Role | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind is TokenKind.ADMIN

    def role_in(self, org: str) -> Role | None:
        if self.kind is TokenKind.ADMIN:
            return Role.ADMIN
        if self.kind is TokenKind.ORG and self.org == org:
            return self.role
        return None

    def require(self, org: str, needed: Role, what: str) -> None:
        """Raise NotFound when the org is invisible to the caller, Forbidden when the role is too low.

        Another org's resources answer 404 so their existence does not leak.
        """
        role = self.role_in(org)
        if role is None:
            raise NotFound(f"{what} not found")
        if _RANK[role] < _RANK[needed]:
            raise Forbidden(f"role {role.value} in organization {org!r} may not do this: needs {needed.value}")

    def may_read_outputs(self, org: str) -> bool:
        """Anyone with a role in the org, and deployments of the org (their short-lived token)."""
        return self.role_in(org) is not None or (self.kind is TokenKind.DEPLOYMENT and self.org == org)

    def may_see_secret_outputs(self, org: str) -> bool:
        role = self.role_in(org)
        if role is not None:
            return _RANK[role] >= _RANK[Role.MEMBER]
        return self.kind is TokenKind.DEPLOYMENT and self.org == org

    def require_runner(self) -> None:
        if self.kind is not TokenKind.RUNNER:
            raise Forbidden("this endpoint is for runner tokens (cascade token create --runner)")

    def may_grant(self, org: str, role: Role) -> bool:
        mine = self.role_in(org)
        return mine is Role.ADMIN and _RANK[role] <= _RANK[mine]
