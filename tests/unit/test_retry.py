"""The retry policy: schedule, jitter, Retry-After, and what an attempt record keeps."""

from __future__ import annotations

import email.utils
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhan_postback.service import retry
from dhan_postback.service.store.base import Attempt

SCHEDULE = (0.0, 5.0, 30.0, 120.0)
NOW = 1_700_000_000.0


def attempt(status: int | None, error: str | None = None) -> Attempt:
    return retry.make_attempt(
        "msg_1", 1, started_at=NOW, latency_ms=3.0, status_code=status, error=error
    )


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_success(status: int) -> None:
    assert retry.is_success(status)


@pytest.mark.parametrize("status", [None, 100, 199, 300, 301, 302, 304, 307, 308, 400, 429, 500])
def test_everything_else_is_failure(status: int | None) -> None:
    assert not retry.is_success(status)


@settings(max_examples=60, deadline=None)
@given(failed=st.integers(min_value=1, max_value=len(SCHEDULE) - 1), seed=st.integers())
def test_backoff_is_between_half_and_all_of_the_scheduled_delay(failed: int, seed: int) -> None:
    delay = retry.backoff_delay(SCHEDULE, failed, random.Random(seed))
    assert delay is not None
    assert SCHEDULE[failed] / 2 <= delay <= SCHEDULE[failed]


def test_backoff_is_none_once_the_schedule_is_used_up() -> None:
    assert retry.backoff_delay(SCHEDULE, len(SCHEDULE)) is None


def test_backoff_spreads_retries_out() -> None:
    rng = random.Random(7)
    delays = {retry.backoff_delay(SCHEDULE, 1, rng) for _ in range(20)}
    assert len(delays) == 20


def test_a_2xx_attempt_is_delivered() -> None:
    outcome = retry.decide(attempt(204), round_attempts=0, schedule=SCHEDULE, now=NOW)
    assert outcome.result == "delivered"
    assert outcome.next_attempt_at is None


def test_a_2xx_that_came_too_late_is_a_failure() -> None:
    late = attempt(200, error="timeout: no complete answer within 5s")
    outcome = retry.decide(late, round_attempts=0, schedule=SCHEDULE, now=NOW)
    assert outcome.result == "retry"


def test_a_failed_first_attempt_retries_after_the_second_delay() -> None:
    outcome = retry.decide(
        attempt(500), round_attempts=0, schedule=SCHEDULE, now=NOW, rng=random.Random(1)
    )
    assert outcome.result == "retry"
    assert outcome.next_attempt_at is not None
    assert NOW + 2.5 <= outcome.next_attempt_at <= NOW + 5.0


def test_a_failed_attempt_without_answer_retries() -> None:
    outcome = retry.decide(
        attempt(None, "ClientConnectorError: refused"),
        round_attempts=1,
        schedule=SCHEDULE,
        now=NOW,
    )
    assert outcome.result == "retry"
    assert outcome.next_attempt_at is not None
    assert NOW + 15 <= outcome.next_attempt_at <= NOW + 30


def test_a_redirect_is_retried_like_any_failure() -> None:
    outcome = retry.decide(attempt(302), round_attempts=0, schedule=SCHEDULE, now=NOW)
    assert outcome.result == "retry"


def test_the_last_scheduled_attempt_failing_is_dead() -> None:
    outcome = retry.decide(
        attempt(503), round_attempts=len(SCHEDULE) - 1, schedule=SCHEDULE, now=NOW
    )
    assert outcome.result == "dead"


def test_a_one_entry_schedule_allows_one_attempt() -> None:
    outcome = retry.decide(attempt(500), round_attempts=0, schedule=(0.0,), now=NOW)
    assert outcome.result == "dead"


def test_retry_after_longer_than_the_backoff_wins() -> None:
    outcome = retry.decide(
        attempt(429), round_attempts=0, schedule=SCHEDULE, now=NOW, retry_after=60.0
    )
    assert outcome.next_attempt_at == NOW + 60.0


def test_retry_after_shorter_than_the_backoff_does_not_hurry_the_retry() -> None:
    outcome = retry.decide(
        attempt(503), round_attempts=1, schedule=SCHEDULE, now=NOW, retry_after=1.0
    )
    assert outcome.next_attempt_at is not None
    assert outcome.next_attempt_at >= NOW + 15


def test_retry_after_does_not_add_attempts() -> None:
    outcome = retry.decide(
        attempt(429), round_attempts=len(SCHEDULE) - 1, schedule=SCHEDULE, now=NOW, retry_after=5
    )
    assert outcome.result == "dead"


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), (" 7 ", 7.0), ("1.5", 1.5)])
def test_retry_after_in_seconds(value: str, seconds: float) -> None:
    assert retry.parse_retry_after(value, now=NOW, cap=600) == seconds


def test_retry_after_as_an_http_date() -> None:
    value = email.utils.formatdate(NOW + 90, usegmt=True)
    assert retry.parse_retry_after(value, now=NOW, cap=600) == pytest.approx(90, abs=1)


def test_retry_after_in_the_past_means_now() -> None:
    value = email.utils.formatdate(NOW - 90, usegmt=True)
    assert retry.parse_retry_after(value, now=NOW, cap=600) == 0.0


def test_retry_after_is_capped() -> None:
    assert retry.parse_retry_after("86400", now=NOW, cap=600) == 600
    far = email.utils.formatdate(NOW + 86400, usegmt=True)
    assert retry.parse_retry_after(far, now=NOW, cap=600) == 600


@pytest.mark.parametrize("value", [None, "", "soon", "-5x", "nan", "Wed, 99 Foo 2015"])
def test_unreadable_retry_after_is_ignored(value: str | None) -> None:
    assert retry.parse_retry_after(value, now=NOW, cap=600) is None


def test_negative_retry_after_means_now() -> None:
    assert retry.parse_retry_after("-5", now=NOW, cap=600) == 0.0


def test_an_attempt_keeps_at_most_300_characters_of_error() -> None:
    kept = attempt(None, "x" * 5000)
    assert kept.error is not None
    assert len(kept.error) == retry.ERROR_LIMIT
    assert kept.error.endswith("...")


def test_an_attempt_keeps_the_first_512_bytes_of_the_response() -> None:
    kept = retry.make_attempt(
        "msg_1",
        2,
        started_at=NOW,
        latency_ms=1.0,
        status_code=500,
        response_body=b"\xff" + b"a" * 2000,
    )
    assert kept.response_prefix is not None
    assert kept.response_prefix.startswith("\ufffd")
    assert len(kept.response_prefix) == 512


def test_an_attempt_without_a_body_keeps_no_prefix() -> None:
    assert attempt(204).response_prefix is None


def test_an_answer_that_is_not_2xx_gets_an_error_text() -> None:
    attempt = retry.make_attempt("msg_1", 1, started_at=0.0, latency_ms=1.0, status_code=503)
    assert attempt.error == "HTTP 503"


def test_a_redirect_says_it_was_not_followed() -> None:
    attempt = retry.make_attempt("msg_1", 1, started_at=0.0, latency_ms=1.0, status_code=302)
    assert attempt.error == "HTTP 302 (redirects are not followed)"


def test_a_2xx_has_no_error_text() -> None:
    attempt = retry.make_attempt("msg_1", 1, started_at=0.0, latency_ms=1.0, status_code=204)
    assert attempt.error is None
