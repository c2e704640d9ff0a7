"""API tokens: random, shown once, stored as SHA-256 hashes (they are high-entropy, so no KDF is needed)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from stackcascade.domain.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from stackcascade.domain.names import check_name
from stackcascade.domain.roles import Principal, Role, TokenKind, parse_role
from stackcascade.services.context import Context
from stackcascade.services.stacks import ensure_org
from stackcascade.store.schema import tokens

PREFIX = "csc_"
MAX_NAME = 200  # tokens.name column


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token_value() -> str:
    return PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    id: str
    value: str
    name: str
    kind: TokenKind
    org: str | None
    role: Role | None


def describe(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "org": row.org,
        "role": row.role,
        "created": row.created_at,
        "expires": row.expires_at,
    }


async def _insert(
    ctx: Context,
    conn: Any,
    *,
    value: str,
    name: str,
    kind: TokenKind,
    org: str | None = None,
    role: Role | None = None,
    deployment_id: str | None = None,
    expires_at: float | None = None,
) -> IssuedToken:
    token_id = str(uuid.uuid4())
    await conn.execute(
        tokens.insert().values(
            id=token_id,
            hash=hash_token(value),
            name=name,
            kind=kind.value,
            org=org,
            role=role.value if role else None,
            deployment_id=deployment_id,
            created_at=ctx.now(),
            expires_at=expires_at,
        )
    )
    return IssuedToken(token_id, value, name, kind, org, role)


async def authenticate(ctx: Context, header: str | None) -> Principal:
    """Resolve an ``Authorization: token <t>`` header to the principal behind it."""
    if not header:
        raise Unauthenticated("missing Authorization header: send 'Authorization: token <your token>'")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in {"token", "bearer"} or not value.strip():
        raise Unauthenticated("malformed Authorization header: send 'Authorization: token <your token>'")
    digest = hash_token(value.strip())
    now = ctx.now()
    cached = ctx.auth_cache.get(digest, now)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    async with ctx.db.read() as conn:
        row = (await conn.execute(sa.select(tokens).where(tokens.c.hash == digest))).first()
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        raise Unauthenticated("invalid or expired token")
    principal = Principal(
        token_id=row.id,
        name=row.name,
        kind=TokenKind(row.kind),
        org=row.org,
        role=Role(row.role) if row.role else None,
    )
    if principal.kind is TokenKind.DEPLOYMENT:
        # Not cached: a deployment's finish deletes its token, and a step that outlives it (a process left
        # in the background) must lose its access then, on every replica, not up to a cache TTL later.
        return principal
    valid_until = now + ctx.auth_cache.ttl
    if row.expires_at is not None:
        valid_until = min(valid_until, row.expires_at)
    ctx.auth_cache.put(digest, principal, valid_until)
    return principal


async def create(
    ctx: Context, principal: Principal, *, org: str | None, role: object, name: str | None, runner: bool = False
) -> IssuedToken:
    """Create an admin, org or runner token. Admins may create any; an org admin only for its org."""
    if name is not None and len(name) > MAX_NAME:
        raise InvalidInput(f"'name' must be at most {MAX_NAME} characters")
    if runner:
        if not principal.is_admin:
            raise Forbidden("only an admin token may create runner tokens")
        async with ctx.db.write() as conn:
            return await _insert(ctx, conn, value=new_token_value(), name=name or "runner", kind=TokenKind.RUNNER)
    if org is None:
        if role not in (None, "admin"):
            raise InvalidInput("give --org for a member or viewer token; without an org the token is an admin token")
        if not principal.is_admin:
            raise Forbidden("only an admin token may create admin tokens")
        async with ctx.db.write() as conn:
            return await _insert(ctx, conn, value=new_token_value(), name=name or "admin", kind=TokenKind.ADMIN)
    check_name("organization", org, may_start_with_dot=True)
    parsed = parse_role(role if role is not None else "member")
    if not principal.may_grant(org, parsed):
        principal.require(org, Role.ADMIN, f"organization {org!r}")
    async with ctx.db.write() as conn:
        await ensure_org(ctx, conn, org)
        return await _insert(
            ctx,
            conn,
            value=new_token_value(),
            name=name or f"{org}-{parsed.value}",
            kind=TokenKind.ORG,
            org=org,
            role=parsed,
        )


async def ensure_admin(ctx: Context, configured: str | None) -> str | None:
    """Make sure an admin token exists. Returns a newly generated token value to print once, else None."""
    async with ctx.db.write() as conn:
        if configured:
            found = await conn.scalar(sa.select(tokens.c.id).where(tokens.c.hash == hash_token(configured)))
            if found is None:
                await _insert(ctx, conn, value=configured, name="admin (CASCADE_ADMIN_TOKEN)", kind=TokenKind.ADMIN)
            return None
        any_admin = await conn.scalar(sa.select(tokens.c.id).where(tokens.c.kind == TokenKind.ADMIN.value).limit(1))
        if any_admin is not None:
            return None
        issued = await _insert(ctx, conn, value=new_token_value(), name="admin", kind=TokenKind.ADMIN)
        return issued.value


async def issue_admin(ctx: Context, name: str) -> str:
    """Mint a new admin token directly in the database (local recovery when the first one was lost)."""
    async with ctx.db.write() as conn:
        return (await _insert(ctx, conn, value=new_token_value(), name=name, kind=TokenKind.ADMIN)).value


async def issue_runner(ctx: Context, name: str) -> IssuedToken:
    """A runner token for the server's own local pool (kept in memory; revoked on shutdown)."""
    async with ctx.db.write() as conn:
        await conn.execute(tokens.delete().where(tokens.c.kind == TokenKind.RUNNER.value, tokens.c.name == name))
        return await _insert(ctx, conn, value=new_token_value(), name=name, kind=TokenKind.RUNNER)


async def revoke_by_id(ctx: Context, token_id: str) -> None:
    async with ctx.db.write() as conn:
        await conn.execute(tokens.delete().where(tokens.c.id == token_id))
    ctx.auth_cache.forget(token_id)


async def list_visible(ctx: Context, principal: Principal) -> list[dict[str, Any]]:
    query = sa.select(tokens).where(tokens.c.kind != TokenKind.DEPLOYMENT.value).order_by(tokens.c.created_at)
    if not principal.is_admin:
        if principal.org is None or principal.role_in(principal.org) is not Role.ADMIN:
            raise Forbidden("only admins may list tokens")
        query = query.where(tokens.c.org == principal.org)
    async with ctx.db.read() as conn:
        return [describe(row) for row in (await conn.execute(query)).all()]


async def revoke(ctx: Context, principal: Principal, token_id: str) -> None:
    async with ctx.db.write() as conn:
        row = (await conn.execute(sa.select(tokens).where(tokens.c.id == token_id))).first()
        if row is None:
            raise NotFound(f"token {token_id!r} not found")
        if not principal.is_admin:
            if row.org is None:
                raise NotFound(f"token {token_id!r} not found")
            principal.require(row.org, Role.ADMIN, f"token {token_id!r}")
        await conn.execute(tokens.delete().where(tokens.c.id == token_id))
    ctx.auth_cache.forget(token_id)
