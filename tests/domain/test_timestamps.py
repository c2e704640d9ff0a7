"""Timestamps in API responses parse in Pulumi's clients: RFC 3339, UTC, ``Z``, milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime

from stackcascade.domain.timestamps import rfc3339


def test_timestamps_are_utc_with_milliseconds_and_a_z() -> None:
    assert rfc3339(1_700_000_000.1234) == "2023-11-14T22:13:20.123Z"


def test_timestamps_round_trip_through_fromisoformat() -> None:
    parsed = datetime.fromisoformat(rfc3339(0.5).replace("Z", "+00:00"))
    assert parsed == datetime(1970, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)
