"""The retry schedule of webhook deliveries."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stackcascade.domain.backoff import MAX_ATTEMPTS, RetryPolicy, from_text
from stackcascade.domain.errors import InvalidInput


def middle() -> float:
    return 0.5


def test_the_defaults_make_eight_attempts_over_about_six_hours() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 8
    assert 5.5 * 3600 <= policy.total_span() <= 6.5 * 3600
    assert policy.total_span() == 60 + 180 + 540 + 1620 + 4860 + 7200 + 7200


def test_waits_grow_by_the_factor_until_the_cap() -> None:
    policy = RetryPolicy(jitter=0)
    assert [policy.delay(n, middle) for n in range(1, 9)] == [60, 180, 540, 1620, 4860, 7200, 7200, 7200]


def test_the_middle_of_the_jitter_range_is_the_plain_wait() -> None:
    assert RetryPolicy().delay(2, middle) == pytest.approx(180)


def test_jitter_spreads_a_wait_by_its_fraction_either_way() -> None:
    policy = RetryPolicy(jitter=0.2)
    assert policy.delay(1, lambda: 0.0) == pytest.approx(48)
    assert policy.delay(1, lambda: 0.999999) == pytest.approx(72, rel=1e-5)


def test_without_jitter_rand_is_not_called() -> None:
    def boom() -> float:
        raise AssertionError("rand() called")

    assert RetryPolicy(jitter=0).delay(3, boom) == 540


def test_a_huge_attempt_number_is_capped_not_an_overflow() -> None:
    policy = RetryPolicy(jitter=0)
    assert policy.delay(10_000, middle) == 7200
    assert RetryPolicy(factor=1e300, max_delay=1e308, jitter=0).delay(5, middle) == 1e308


def test_a_factor_of_one_gives_a_constant_wait() -> None:
    policy = RetryPolicy(max_attempts=4, first_delay=30, factor=1, jitter=0)
    assert [policy.delay(n, middle) for n in (1, 2, 3)] == [30, 30, 30]
    assert policy.total_span() == 90


def test_a_zero_first_delay_retries_at_once() -> None:
    policy = RetryPolicy(first_delay=0, max_delay=0)
    assert policy.delay(5, middle) == 0
    assert policy.total_span() == 0


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        RetryPolicy().delay(0, middle)


def test_rand_outside_the_unit_interval_is_a_bug() -> None:
    with pytest.raises(ValueError, match="rand"):
        RetryPolicy().delay(1, lambda: 1.5)
    with pytest.raises(ValueError, match="rand"):
        RetryPolicy().delay(1, lambda: -0.1)


def test_gives_up_once_every_attempt_is_used() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.gives_up(n) for n in (0, 1, 2, 3, 4)] == [False, False, False, True, True]


def test_a_single_attempt_never_retries() -> None:
    policy = RetryPolicy(max_attempts=1)
    assert policy.gives_up(1)
    assert policy.total_span() == 0


@given(
    attempt=st.integers(min_value=1, max_value=200),
    r=st.floats(min_value=0, max_value=1, exclude_max=True),
    jitter=st.floats(min_value=0, max_value=0.99),
)
def test_a_wait_stays_within_the_jitter_band_of_the_capped_wait(attempt: int, r: float, jitter: float) -> None:
    policy = RetryPolicy(jitter=jitter)
    plain = RetryPolicy(jitter=0).delay(attempt, middle)
    wait = policy.delay(attempt, lambda: r)
    assert plain * (1 - jitter) - 1e-9 <= wait <= plain * (1 + jitter) + 1e-9
    assert wait >= 0


@given(st.integers(min_value=1, max_value=60))
def test_plain_waits_never_shrink(attempt: int) -> None:
    policy = RetryPolicy(jitter=0)
    assert policy.delay(attempt, middle) <= policy.delay(attempt + 1, middle)


def test_waits_with_real_randomness_average_to_the_plain_wait() -> None:
    rng = random.Random(7)
    waits = [RetryPolicy().delay(1, rng.random) for _ in range(2000)]
    assert sum(waits) / len(waits) == pytest.approx(60, rel=0.02)


# validation


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"max_attempts": 0}, "attempts"),
        ({"max_attempts": -3}, "attempts"),
        ({"max_attempts": MAX_ATTEMPTS + 1}, "attempts"),
        ({"max_attempts": 2.5}, "attempts"),
        ({"max_attempts": True}, "attempts"),
        ({"first_delay": -1}, "first_delay (first=) must not be negative"),
        ({"max_delay": 10, "first_delay": 60}, "max_delay"),
        ({"factor": 0.5}, "factor (factor=) must be at least 1"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 1}, "jitter"),
        ({"first_delay": math.nan}, "finite"),
        ({"max_delay": math.inf}, "finite"),
        ({"factor": "3"}, "finite number"),
    ],
)
def test_nonsense_policies_are_refused_with_the_rule(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert words in caught.value.message


def test_the_policy_is_immutable() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 3  # type: ignore[misc]


# from_text


def test_a_full_spec_sets_every_field() -> None:
    assert from_text("attempts=5,first=10,factor=2,max=600,jitter=0.1") == RetryPolicy(5, 10, 2, 600, 0.1)


def test_left_out_keys_keep_their_defaults() -> None:
    assert from_text("attempts=3") == RetryPolicy(max_attempts=3)
    assert from_text("") == RetryPolicy()


def test_whitespace_and_empty_items_are_tolerated() -> None:
    assert from_text(" attempts = 4 , , jitter=0 ,") == RetryPolicy(max_attempts=4, jitter=0)


def test_delays_may_carry_a_unit() -> None:
    assert from_text("first=30s,max=2h") == RetryPolicy(first_delay=30, max_delay=7200)
    assert from_text("first=1m,max=90M") == RetryPolicy(first_delay=60, max_delay=5400)


def test_an_unknown_key_is_named_with_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        from_text("attempts=3,retries=5")
    assert "unknown retry setting 'retries'" in caught.value.message
    assert "attempts, first, factor, max, jitter" in caught.value.message


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("attempts", "key=value"),
        ("attempts=", "key=value"),
        ("attempts=eight", "whole number"),
        ("attempts=2.5", "whole number"),
        ("attempts=-1", "whole number"),
        ("first=soon", "first='soon' is not a number"),
        ("factor=2h", "factor='2h' is not a number"),
        ("max=inf", "finite"),
        ("jitter=nan", "finite"),
        ("attempts=3,attempts=4", "given twice"),
        ("attempts=0", "from 1"),
        ("factor=0.5", "factor (factor=) must be at least 1"),
    ],
)
def test_bad_specs_are_refused_saying_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        from_text(spec)
    assert words in caught.value.message
