"""What every service needs: the database, the secret box, settings and a clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from stackcascade.services.secrets import SecretBox
from stackcascade.store.db import Database


@dataclass(slots=True)
class Context:
    db: Database
    secrets: SecretBox
    public_url: str = "http://127.0.0.1:8080"
    org_concurrency: int = 25
    lease_seconds: float = 60.0
    clock: Callable[[], float] = field(default=time.time)

    def now(self) -> float:
        return self.clock()

    def console_url(self, *parts: str) -> str:
        return "/".join([self.public_url.rstrip("/"), *parts])
