"""Masker: every secret and its common encodings become [secret] in log lines."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

from stackcascade.runner.masking import MASK, Masker


def test_plain_values_are_masked_everywhere_in_a_line() -> None:
    masker = Masker(["hunter2", "s3cr3t-token"])
    assert masker.mask("password=hunter2 token=s3cr3t-token again hunter2") == (
        f"password={MASK} token={MASK} again {MASK}"
    )


def test_lines_without_secrets_are_unchanged() -> None:
    assert Masker(["hunter2"]).mask("nothing to see") == "nothing to see"
    assert Masker([]).mask("nothing to see") == "nothing to see"


def test_longest_secret_wins_when_one_contains_another() -> None:
    masker = Masker(["abc", "abcdef"])
    assert masker.mask("xabcdefx") == f"x{MASK}x"  # not "x[secret]defx"
    assert masker.mask("abc") == MASK


def test_empty_values_are_ignored_but_short_ones_are_masked() -> None:
    masker = Masker(["", "q"])
    assert masker.mask("") == ""
    assert masker.mask("quiet") == f"{MASK}uiet"


def test_base64_encodings_are_masked() -> None:
    secret = "correct horse battery staple?>"
    encoded = base64.b64encode(secret.encode()).decode()
    urlsafe = base64.urlsafe_b64encode(secret.encode()).decode()
    assert encoded != urlsafe
    masker = Masker([secret])
    assert masker.mask(f"data: {encoded}") == f"data: {MASK}"
    assert masker.mask(f"data: {urlsafe}") == f"data: {MASK}"
    padded = base64.b64encode(b"hunter2").decode()
    assert padded.endswith("=")
    assert Masker(["hunter2"]).mask(f"Authorization: Basic {padded.rstrip('=')}") == f"Authorization: Basic {MASK}"


def test_url_encoded_values_are_masked() -> None:
    secret = "p@ss word/&=+"
    masker = Masker([secret])
    for encoded in (quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret)):
        assert encoded != secret
        assert masker.mask(f"postgres://user:{encoded}@db/app") == f"postgres://user:{MASK}@db/app"


def test_json_escaped_values_are_masked() -> None:
    secret = 'a "quoted" \\ välue'
    masker = Masker([secret])
    assert masker.mask(json.dumps({"password": secret})) == json.dumps({"password": MASK})
    assert masker.mask(json.dumps({"password": secret}, ensure_ascii=False)) == json.dumps({"password": MASK})


def test_multiline_secrets_are_masked_line_by_line() -> None:
    key = "-----BEGIN KEY-----\nAAAABBBBCCCCDDDD\nEEEEFFFF\n}\n-----END KEY-----\n"
    masker = Masker([key])
    assert masker.mask("AAAABBBBCCCCDDDD") == MASK
    assert masker.mask("  EEEEFFFF") == f"  {MASK}"
    assert masker.mask("}") == "}"  # too short a line to be worth masking on its own
    assert masker.mask(json.dumps(key)) == f'"{MASK}"'


def test_regex_metacharacters_are_literal() -> None:
    masker = Masker([".*", "a+b"])
    assert masker.mask("x.*y aab a+b") == f"x{MASK}y aab {MASK}"


def test_values_can_be_added_later() -> None:
    masker = Masker(["first"])
    masker.add("second", "")
    assert masker.mask("first second third") == f"{MASK} {MASK} third"
