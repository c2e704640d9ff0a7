"""Settings from the environment: a bad value stops the start with what to write instead."""

from __future__ import annotations

import pytest

from stackcascade.config import Config


def test_the_claim_poll_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Config().claim_poll_seconds == 1.0
    monkeypatch.setenv("CASCADE_CLAIM_POLL_SECONDS", "2.5")
    assert Config().claim_poll_seconds == 2.5


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("soon", "CASCADE_CLAIM_POLL_SECONDS must be a number of seconds, got 'soon'"),
        ("0", "CASCADE_CLAIM_POLL_SECONDS must be between 0.05 and 3600 seconds, got '0'"),
        ("7200", "CASCADE_CLAIM_POLL_SECONDS must be between 0.05 and 3600 seconds, got '7200'"),
    ],
)
def test_a_claim_poll_interval_that_is_not_a_sensible_number_of_seconds_is_refused(
    monkeypatch: pytest.MonkeyPatch, raw: str, message: str
) -> None:
    monkeypatch.setenv("CASCADE_CLAIM_POLL_SECONDS", raw)
    with pytest.raises(SystemExit) as refused:
        Config()
    assert str(refused.value) == message
