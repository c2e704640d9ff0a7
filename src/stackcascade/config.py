"""Server configuration: command-line flags over environment variables over defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 8080


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0.05 <= value <= 3600:
        raise SystemExit(f"{name} must be between 0.05 and 3600 seconds, got {raw!r}")
    return value


@dataclass(slots=True)
class Config:
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("CASCADE_DATA_DIR", ".cascade")))
    database_url: str | None = field(default_factory=lambda: os.environ.get("CASCADE_DATABASE_URL") or None)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    runners: int = 2
    public_url: str | None = field(default_factory=lambda: os.environ.get("CASCADE_PUBLIC_URL") or None)
    admin_token: str | None = field(default_factory=lambda: os.environ.get("CASCADE_ADMIN_TOKEN") or None)
    secret_key: str | None = field(default_factory=lambda: os.environ.get("CASCADE_SECRET_KEY") or None)
    max_body_bytes: int = field(default_factory=lambda: _env_int("CASCADE_MAX_BODY_BYTES", 1024 * 1024))
    org_concurrency: int = field(default_factory=lambda: _env_int("CASCADE_ORG_CONCURRENCY", 25))
    lease_seconds: int = field(default_factory=lambda: _env_int("CASCADE_LEASE_SECONDS", 60))
    runner_grace_seconds: float = 30.0
    # How often a runner's long poll asks the database without being woken: work queued by another
    # replica wakes it at once on PostgreSQL (replica notifications); this is the fallback.
    claim_poll_seconds: float = field(default_factory=lambda: _env_seconds("CASCADE_CLAIM_POLL_SECONDS", 1.0))
    # Comma-separated CIDRs where webhooks may go although they are loopback or private.
    webhook_allow_networks: str | None = field(
        default_factory=lambda: os.environ.get("CASCADE_WEBHOOK_ALLOW_NETWORKS") or None
    )
    # Delivery retries, e.g. "attempts=8,first=60,factor=3,max=7200,jitter=0.2" (domain.backoff).
    webhook_retry: str | None = field(default_factory=lambda: os.environ.get("CASCADE_WEBHOOK_RETRY") or None)
    demo: bool = False

    def resolved_database_url(self) -> str:
        from stackcascade.store.db import sqlite_url_for

        return self.database_url or sqlite_url_for(self.data_dir)

    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::"} else self.host  # noqa: S104 - only naming it
        return f"http://{host}:{self.port}"
