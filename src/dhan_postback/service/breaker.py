"""Circuit breakers, one per Postback URL: stop hammering an endpoint that keeps failing.

A breaker starts ``closed``: requests flow, and consecutive failures are counted (a success
resets the count). At ``threshold`` consecutive failures it turns ``open``: the dispatcher
sends nothing to that URL (its deliveries stay in the outbox, unclaimed) for ``cooldown``
seconds. Then it is ``half_open``: exactly one request, the *probe*, may go. A successful
probe closes the breaker; a failed one opens it again for another cooldown.

Only results that can tell something about the current state count: while open, late
results of requests sent before the breaker opened are ignored, and while half-open only the
probe's result counts. A :class:`Ticket` carries that knowledge from ``acquire`` to
``record``.

Plain objects driven by an explicit ``now``: no tasks, no timers, easy to test.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["BreakerBoard", "BreakerState", "CircuitBreaker", "Ticket"]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Ticket:
    """Permission to send one request to ``url``; ``probe`` when it is the half-open probe."""

    url: str
    probe: bool = False


class CircuitBreaker:
    """The breaker of one URL."""

    __slots__ = ("_state", "cooldown", "failures", "opened_at", "probing", "threshold")

    def __init__(self, threshold: int, cooldown: float) -> None:
        if threshold < 1:
            raise ValueError("a breaker threshold is at least 1")
        self.threshold = threshold
        self.cooldown = cooldown
        self._state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.probing = False

    def state(self, now: float) -> BreakerState:
        """The state at ``now``: an open breaker turns half-open once its cooldown is over."""
        if self._state is BreakerState.OPEN and now >= self.opened_at + self.cooldown:
            self._state = BreakerState.HALF_OPEN
            self.probing = False
        return self._state

    def allows(self, now: float) -> bool:
        """Whether a request could be sent now (without taking the probe slot)."""
        state = self.state(now)
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and not self.probing
        )

    def acquire(self, now: float) -> bool | None:
        """Take permission to send: None when refused, else whether it is the probe."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return None

    def abandon(self, probe: bool) -> None:
        """A permitted request was not sent after all: free the probe slot if it held it."""
        if probe and self._state is BreakerState.HALF_OPEN:
            self.probing = False

    def record(self, probe: bool, success: bool, now: float) -> None:
        """Count the result of a request sent with permission ``probe``."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            if success:
                self.failures = 0
            else:
                self.failures += 1
                if self.failures >= self.threshold:
                    self._open(now)
        elif state is BreakerState.HALF_OPEN and probe:
            self.probing = False
            if success:
                self._state = BreakerState.CLOSED
                self.failures = 0
            else:
                self._open(now)
        # OPEN, or a non-probe result while half-open: a late answer from before; ignore it.

    def reopens_at(self) -> float | None:
        """When an open breaker turns half-open, or None when it is not open."""
        if self._state is BreakerState.OPEN:
            return self.opened_at + self.cooldown
        return None

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self.opened_at = now
        self.probing = False


class BreakerBoard:
    """The breakers of every URL the dispatcher talks to.

    Only breakers with something to remember are kept: a closed breaker with no failure
    counted is dropped, so the board stays as small as the set of troubled URLs.
    """

    def __init__(self, threshold: int, cooldown: float) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._breakers: dict[str, CircuitBreaker] = {}

    def state(self, url: str, now: float) -> BreakerState:
        breaker = self._breakers.get(url)
        return BreakerState.CLOSED if breaker is None else breaker.state(now)

    def allows(self, url: str, now: float) -> bool:
        breaker = self._breakers.get(url)
        return breaker is None or breaker.allows(now)

    def acquire(self, url: str, now: float) -> Ticket | None:
        """Permission to send one request to ``url`` now, or None while it must wait."""
        breaker = self._breakers.get(url)
        if breaker is None:
            return Ticket(url)
        probe = breaker.acquire(now)
        return None if probe is None else Ticket(url, probe)

    def abandon(self, ticket: Ticket) -> None:
        breaker = self._breakers.get(ticket.url)
        if breaker is not None:
            breaker.abandon(ticket.probe)

    def record(self, ticket: Ticket, success: bool, now: float) -> BreakerState:
        """Count a result; return the URL's state after it."""
        breaker = self._breakers.get(ticket.url)
        if breaker is None:
            if success:
                return BreakerState.CLOSED
            breaker = self._breakers[ticket.url] = CircuitBreaker(self.threshold, self.cooldown)
        breaker.record(ticket.probe, success, now)
        state = breaker.state(now)
        if state is BreakerState.CLOSED and breaker.failures == 0:
            del self._breakers[ticket.url]
        return state

    def blocked_urls(self, now: float) -> set[str]:
        """URLs that may not be sent to now: open, or half-open with the probe out."""
        return {url for url, breaker in self._breakers.items() if not breaker.allows(now)}

    def not_closed(self, now: float) -> dict[str, BreakerState]:
        """Every URL whose breaker is open or half-open, with its state."""
        states = {url: breaker.state(now) for url, breaker in self._breakers.items()}
        return {url: state for url, state in states.items() if state is not BreakerState.CLOSED}

    def next_reopen(self) -> float | None:
        """The earliest time an open breaker turns half-open (time to claim a probe)."""
        times = [t for b in self._breakers.values() if (t := b.reopens_at()) is not None]
        return min(times, default=None)
