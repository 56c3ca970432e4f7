"""When to try a delivery again: the retry schedule, its jitter, and ``Retry-After``.

Pure functions, so the policy can be read and tested without a network or a store.

The schedule (``settings.retry_schedule``) holds one delay per attempt of a round: entry ``k``
is the wait before attempt ``k + 1``. The first entry is the wait before the first attempt,
and that attempt goes at once (the store makes a new delivery due when it commits it, a replay
when it is asked for): the settings refuse a schedule whose first entry is not ``0s``, so
that no configured wait is dropped without a word. Only entries ``1..`` are ever waited.
After a round has used every entry, the delivery is ``dead`` (a replay starts a new round).

Jitter: after attempt ``k`` fails, the next attempt waits a delay drawn uniformly from
``[d / 2, d]`` where ``d = schedule[k]`` ("equal jitter"). A burst of failures (an endpoint
that went down for everyone at once) spreads out instead of coming back as one burst, while
every retry still waits at least half of its configured delay and never longer than it: the
configured schedule is the worst case, and its span is at least half the configured span.

``Retry-After`` on a 429 or 503 (seconds, or an HTTP date) moves the next attempt later when
the receiver asks for more than the schedule's delay; it is capped at
``settings.retry_after_cap`` and never adds attempts to a round.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Sequence
from typing import Final

from .store.base import Attempt, Outcome

__all__ = [
    "ERROR_LIMIT",
    "RESPONSE_PREFIX_BYTES",
    "RETRY_AFTER_STATUSES",
    "backoff_delay",
    "decide",
    "is_success",
    "make_attempt",
    "parse_retry_after",
    "succeeded",
]

ERROR_LIMIT: Final = 300
"""Characters of error text kept per attempt."""

RESPONSE_PREFIX_BYTES: Final = 512
"""Bytes of a response body kept per attempt."""

RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
"""Statuses whose ``Retry-After`` header is honoured."""


def is_success(status_code: int | None) -> bool:
    """A delivery succeeded when the receiver answered 2xx (redirects are failures)."""
    return status_code is not None and 200 <= status_code < 300


def succeeded(attempt: Attempt) -> bool:
    """An attempt succeeded when it got a 2xx and nothing went wrong after (a late body)."""
    return attempt.error is None and is_success(attempt.status_code)


def backoff_delay(
    schedule: Sequence[float], failed_in_round: int, rng: random.Random | None = None
) -> float | None:
    """Seconds to wait after the ``failed_in_round``-th failed attempt of a round.

    None when the schedule has no entry left: the delivery is dead. The delay is drawn
    uniformly from ``[d / 2, d]`` with ``d = schedule[failed_in_round]``.
    """
    if failed_in_round < 1:
        raise ValueError("backoff_delay is asked after at least one failed attempt")
    if failed_in_round >= len(schedule):
        return None
    delay = schedule[failed_in_round]
    return (rng or random).uniform(delay / 2, delay)


def parse_retry_after(value: str | None, *, now: float, cap: float) -> float | None:
    """Seconds the receiver asked us to wait, from a ``Retry-After`` value, at most ``cap``.

    Accepts delta-seconds (``120``, also ``1.5``) and HTTP dates
    (``Wed, 21 Oct 2015 07:28:00 GMT``). None when absent or unreadable; a date in the past
    is 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds: float
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": the RFC's way of saying UTC with no zone info
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap)


def make_attempt(
    delivery_id: str,
    number: int,
    *,
    started_at: float,
    latency_ms: float,
    status_code: int | None,
    error: str | None = None,
    response_body: bytes | None = None,
) -> Attempt:
    """An :class:`Attempt` with its error text and response prefix cut to the stored sizes.

    An answer that is not a 2xx gets an error text too (``HTTP 503``), so that the delivery
    log says why in words wherever a status code alone would be easy to misread.
    """
    if error is None and status_code is not None and not 200 <= status_code < 300:
        error = f"HTTP {status_code}"
        if 300 <= status_code < 400:
            error += " (redirects are not followed)"
    prefix: str | None = None
    if response_body:
        prefix = response_body[:RESPONSE_PREFIX_BYTES].decode("utf-8", errors="replace")
    if error is not None and len(error) > ERROR_LIMIT:
        error = error[: ERROR_LIMIT - 3] + "..."
    return Attempt(
        delivery_id=delivery_id,
        number=number,
        started_at=started_at,
        latency_ms=latency_ms,
        status_code=status_code,
        error=error,
        response_prefix=prefix,
    )


def decide(
    attempt: Attempt,
    *,
    round_attempts: int,
    schedule: Sequence[float],
    now: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> Outcome:
    """What to do after ``attempt``: delivered, retry at a time, or dead.

    ``round_attempts`` is the number of attempts of this round *before* ``attempt`` (the
    claim's ``round_attempts``). ``retry_after`` is the already parsed and capped
    ``Retry-After`` (see :func:`parse_retry_after`); pass it only for statuses in
    :data:`RETRY_AFTER_STATUSES`.
    """
    if succeeded(attempt):
        return Outcome(attempt=attempt, result="delivered")
    delay = backoff_delay(schedule, round_attempts + 1, rng)
    if delay is None:
        return Outcome(attempt=attempt, result="dead")
    if retry_after is not None:
        delay = max(delay, retry_after)
    return Outcome(attempt=attempt, result="retry", next_attempt_at=now + delay)
