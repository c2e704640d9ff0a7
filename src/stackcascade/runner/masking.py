"""Replace secret values in log lines before they leave the runner.

A secret can leak in more shapes than its plain text: tools print base64 (Kubernetes secrets, HTTP
basic auth headers), URL-encoded values (connection strings, query strings) and JSON-escaped strings
(a secret containing quotes, backslashes or newlines inside JSON output). Each of those forms is
masked too. Masking works on single lines, so a multi-line secret (a PEM key) is also masked line by
line, for its lines of at least ``MIN_PART_LENGTH`` characters (shorter lines such as ``}`` would
blank out unrelated text while protecting nothing).

Every non-empty value is masked, whatever its length: a one-character secret masks that character
everywhere. Over-masking a log is preferable to leaking a value somebody declared secret.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "[secret]"
MIN_PART_LENGTH = 8


class Masker:
    """Masks a fixed (but extensible) set of secret values and their common encodings."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Also mask these values from now on (e.g. secret outputs learned during the run)."""
        for secret in secrets:
            if secret:
                self._forms.update(_forms_of(secret))
        self._forms.discard("")
        if self._forms:
            # Longest first: at any position the longest form wins, so a secret that contains
            # another one is masked whole rather than leaving its remainder visible.
            ordered = sorted(self._forms, key=lambda form: (-len(form), form))
            self._pattern = re.compile("|".join(re.escape(form) for form in ordered))

    def mask(self, line: str) -> str:
        """``line`` with every occurrence of every secret form replaced by ``[secret]``."""
        if self._pattern is None:
            return line
        return self._pattern.sub(MASK, line)


def _forms_of(secret: str) -> set[str]:
    forms = {secret}
    for text in [secret, *_long_lines(secret)]:
        raw = text.encode("utf-8")
        encoded = base64.b64encode(raw).decode("ascii")
        urlsafe = base64.urlsafe_b64encode(raw).decode("ascii")
        forms.update({text, encoded, encoded.rstrip("="), urlsafe, urlsafe.rstrip("=")})
        forms.update({quote(text, safe=""), quote_plus(text, safe=""), quote(text)})
        # JSON-escaped, as inside a JSON string (with and without \u escapes for non-ASCII).
        forms.update({json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]})
    return forms


def _long_lines(secret: str) -> list[str]:
    if "\n" not in secret and "\r" not in secret:
        return []
    return [part.strip() for part in secret.splitlines() if len(part.strip()) >= MIN_PART_LENGTH]
