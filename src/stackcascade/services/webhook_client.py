"""What services need from the HTTP side of webhooks, as a protocol the ``webhooks`` adapter implements.

Services decide what to send and record what happened; the adapter resolves the host, enforces the
target rules after DNS resolution, and makes the request. Tests can inject a client of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One HTTP attempt as it will be recorded (the contract's WebhookDelivery, minus ids)."""

    sent_at: float
    duration_ms: int
    response_code: int  # 0 when no response arrived (refused target, timeout, connection error)
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.response_code < 300


class WebhookClient(Protocol):
    async def check_target(self, url: str) -> None:
        """Raise ``InvalidInput`` when ``url`` may not receive webhooks (save-time check)."""

    async def send(self, request: OutgoingRequest) -> AttemptResult:
        """POST once; never raises for network trouble (it is reported in the result)."""
