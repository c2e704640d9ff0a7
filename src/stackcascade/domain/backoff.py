"""When to retry a failed webhook delivery, and when to give up.

The defaults make 8 attempts spread over about 6 hours (waits of 1, 3, 9, 27 and 81 minutes, then
2 hours twice), long enough to ride out a receiver's deploy or outage without retrying for days.
Jitter spreads the retries of many deliveries that failed together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from stackcascade.domain.errors import InvalidInput

_KEYS: Final = {
    "attempts": "max_attempts",
    "first": "first_delay",
    "factor": "factor",
    "max": "max_delay",
    "jitter": "jitter",
}
_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_ATTEMPTS: Final = 100


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``first_delay * factor**(n-1)`` after the n-th attempt, at most ``max_delay``."""

    max_attempts: int = 8
    first_delay: float = 60.0
    factor: float = 3.0
    max_delay: float = 7200.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
            raise InvalidInput(
                f"retry max_attempts (attempts=) must be a whole number from 1 to {MAX_ATTEMPTS}, not {attempts!r}"
            )
        for key, name in list(_KEYS.items())[1:]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidInput(f"retry {name} ({key}=) must be a finite number, not {value!r}")
        if self.first_delay < 0:
            raise InvalidInput(f"retry first_delay (first=) must not be negative, not {self.first_delay!r}")
        if self.max_delay < self.first_delay:
            raise InvalidInput(
                f"retry max_delay (max={self.max_delay!r}) must be at least first_delay (first={self.first_delay!r})"
            )
        if self.factor < 1:
            raise InvalidInput(f"retry factor (factor=) must be at least 1 so waits never shrink, not {self.factor!r}")
        if not 0 <= self.jitter < 1:
            raise InvalidInput(
                f"retry jitter (jitter=) must be a fraction from 0 up to (not including) 1, not {self.jitter!r}"
            )

    def _base(self, attempt: int) -> float:
        if self.first_delay == 0:
            return 0.0
        try:
            grown = self.first_delay * self.factor ** (attempt - 1)
        except OverflowError:
            return self.max_delay
        return min(grown, self.max_delay)

    def delay(self, attempt: int, rand: Callable[[], float]) -> float:
        """Seconds to wait after ``attempt`` attempts (>= 1) failed; ``rand()`` is uniform in [0, 1)."""
        if attempt < 1:
            raise ValueError(f"attempt counts from 1, got {attempt}")
        base = self._base(attempt)
        if self.jitter == 0:
            return base
        r = rand()
        if not 0 <= r <= 1:
            raise ValueError(f"rand() must return a number in [0, 1), got {r!r}")
        return max(0.0, base * (1 + self.jitter * (2 * r - 1)))

    def gives_up(self, attempts: int) -> bool:
        """Whether a delivery that failed ``attempts`` times is dead."""
        return attempts >= self.max_attempts

    def total_span(self) -> float:
        """Seconds from the first attempt to the last, without jitter."""
        return sum(self._base(n) for n in range(1, self.max_attempts))


def _number(key: str, text: str) -> float:
    value = text
    scale = 1.0
    if key in ("first", "max") and text[-1:].lower() in _UNITS:
        value, scale = text[:-1], _UNITS[text[-1].lower()]
    try:
        number = float(value)
    except ValueError:
        raise InvalidInput(f"retry setting {key}={text!r} is not a number") from None
    if not math.isfinite(number):
        raise InvalidInput(f"retry setting {key}={text!r} must be a finite number")
    return number * scale


def from_text(spec: str) -> RetryPolicy:
    """Parse ``"attempts=8,first=60,factor=3,max=7200,jitter=0.2"``; keys left out keep their defaults.

    ``first`` and ``max`` are seconds and may end in ``s``, ``m`` or ``h``.
    """
    given: dict[str, Any] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, text = (part.strip() for part in item.partition("="))
        if not sep or not text:
            raise InvalidInput(f"retry setting {item!r} needs the form key=value, e.g. attempts=8")
        if key not in _KEYS:
            raise InvalidInput(f"unknown retry setting {key!r}: use any of {', '.join(_KEYS)}")
        if _KEYS[key] in given:
            raise InvalidInput(f"retry setting {key!r} is given twice")
        if key == "attempts":
            if not (text.isascii() and text.isdigit()):
                raise InvalidInput(f"retry setting attempts={text!r} must be a whole number")
            given[_KEYS[key]] = int(text)
        else:
            given[_KEYS[key]] = _number(key, text)
    return RetryPolicy(**given)
