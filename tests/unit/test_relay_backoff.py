"""Backoff with full jitter: bounded, growing, capped, reset by success."""

from __future__ import annotations

import random

import pytest

from dhan_postback.relay.backoff import Backoff


def test_delays_stay_under_an_exponentially_growing_ceiling() -> None:
    backoff = Backoff(base=1.0, cap=1000.0, rng=random.Random(1))
    for failures in range(8):
        ceiling = backoff.ceiling()
        assert ceiling == 2.0**failures
        assert 0.0 <= backoff.next_delay() <= ceiling


def test_the_ceiling_is_capped() -> None:
    backoff = Backoff(base=0.5, cap=30.0, failures=200)
    assert backoff.ceiling() == 30.0
    assert all(backoff.next_delay() <= 30.0 for _ in range(100))


def test_jitter_spreads_the_delays() -> None:
    backoff = Backoff(base=1.0, cap=1.0, rng=random.Random(2))
    assert len({round(backoff.next_delay(), 6) for _ in range(20)}) > 10


def test_reset_starts_again_from_the_base() -> None:
    backoff = Backoff(base=0.5, cap=30.0, failures=5)
    backoff.reset()
    assert backoff.ceiling() == 0.5


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(base=-1.0)


def test_a_retry_after_header_sets_the_least_wait_up_to_its_cap() -> None:
    backoff = Backoff(base=0.001, cap=0.001)
    assert backoff.next_delay("5", retry_after_cap=60.0) == 5.0
    assert backoff.next_delay("3600", retry_after_cap=60.0) == 60.0


def test_a_retry_after_that_is_not_a_number_is_ignored() -> None:
    backoff = Backoff(base=0.001, cap=0.001)
    assert backoff.next_delay("Wed, 21 Oct 2026 07:28:00 GMT") <= 0.001
