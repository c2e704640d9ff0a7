"""Timestamps as the API shows them."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ts: float) -> str:
    """UTC with milliseconds and a ``Z``: parseable by every Pulumi client (at most 6 fractional digits)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
