"""Circuit breakers, one per Postback URL: pause an endpoint whose recent deliveries mostly fail.

A breaker judges the **endpoint**, never one delivery. Its rules:

* **Failure rate over a window.** A ``closed`` breaker keeps the latest result of each
  delivery sent to its URL within the last ``window`` seconds. Once at least
  ``min_attempts`` deliveries are in the window and at least ``failure_rate`` of them last
  failed, it turns ``open``. A run of failures proves nothing on its own: with 16 requests in
  flight, five failures in a row are common on an endpoint that answers 70 % of them.
* **One delivery's failures are its own.** A delivery counts once in the window, by its
  latest result. And when a delivery fails again after *other* deliveries to the URL have
  succeeded since its previous failure, the endpoint is working and that delivery is the
  problem (a body the receiver refuses, say): its failures are taken out of the judgement
  until it is delivered. It still follows its own retry schedule to ``dead``.
* **Open, then probe.** An open breaker lets nothing through for its cooldown, then turns
  ``half_open``: exactly one request, the *probe*, may go. A successful probe closes the
  breaker with a fresh window; a failed one opens it again. Probes rotate: the dispatcher
  asks :meth:`BreakerBoard.rotate_probe` whether a delivery known to fail should make way for
  another waiting delivery of the same URL, so that a poisoned delivery cannot keep the
  endpoint paused by being the oldest one due at every probe.
* **Cooldown grows while the endpoint stays down.** The first cooldown is short
  (``cooldown``); every failed probe doubles it, up to ``max_cooldown``. A breaker that opens
  again less than a ``window`` after it closed continues from where it was instead of
  starting short again, so a flapping endpoint is not hammered every second.

Only results that can tell something about the current state count: each :class:`Ticket`
carries the breaker's *generation* (bumped at every change of state), so a late answer to a
request sent before the breaker opened, or before it closed again, is ignored, and while
half-open only the probe's result counts.

Plain objects driven by an explicit ``now``: no tasks, no timers, easy to test.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "FAILING_MEMORY",
    "FAILING_WINDOWS",
    "WINDOW_CAP",
    "BreakerBoard",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "Ticket",
]

WINDOW_CAP: Final = 1000
"""Deliveries kept in one breaker's window at most (the most recent)."""
FAILING_MEMORY: Final = 1000
"""Deliveries remembered as failing per URL at most (the most recent)."""
FAILING_WINDOWS: Final = 10
"""A failing delivery is remembered for this many windows after its last failure."""


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens and how long it waits; see the module docstring."""

    failure_rate: float = 0.5
    min_attempts: int = 20
    window: float = 30.0
    cooldown: float = 1.0
    max_cooldown: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 < self.failure_rate <= 1.0:
            raise ValueError("a breaker's failure rate is a fraction above 0, at most 1")
        if self.min_attempts < 1:
            raise ValueError("a breaker needs at least 1 attempt to judge an endpoint")
        if self.window <= 0:
            raise ValueError("a breaker's window is longer than 0 seconds")
        if self.max_cooldown < self.cooldown:
            raise ValueError("a breaker's max cooldown is at least its first cooldown")


@dataclass(frozen=True, slots=True)
class Ticket:
    """Permission to send one request to ``url``; ``probe`` when it is the half-open probe."""

    url: str
    probe: bool = False
    generation: int = 0


class CircuitBreaker:
    """The breaker of one URL."""

    __slots__ = (
        "_closed_at",
        "_failed",
        "_failing",
        "_generation",
        "_last_success",
        "_results",
        "_state",
        "cooldown",
        "opened_at",
        "policy",
        "probing",
    )

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._results: OrderedDict[str, tuple[float, bool]] = OrderedDict()
        """delivery id -> (time, succeeded) of its latest counted result, oldest first."""
        self._failed = 0
        """How many of ``_results`` are failures."""
        self._failing: OrderedDict[str, tuple[float, bool]] = OrderedDict()
        """delivery id -> (time of its last failure, whether its failures are its own), for
        deliveries not delivered since."""
        self._last_success = float("-inf")
        self._closed_at: float | None = None
        self.cooldown = policy.cooldown
        self.opened_at = 0.0
        self.probing = False

    @property
    def generation(self) -> int:
        return self._generation

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

    def abandon(self, probe: bool, generation: int) -> None:
        """A permitted request was not sent after all: free the probe slot if it held it."""
        if probe and generation == self._generation and self._state is BreakerState.HALF_OPEN:
            self.probing = False

    def failing(self, delivery_id: str, now: float) -> bool:
        """Whether ``delivery_id`` failed recently and has not been delivered since."""
        self._forget_failing(now)
        return delivery_id in self._failing

    def record(
        self, probe: bool, generation: int, delivery_id: str, success: bool, now: float
    ) -> None:
        """Count the result of a request sent with a ticket of ``generation``."""
        state = self.state(now)
        repeat = self._note(delivery_id, success, now)
        if generation != self._generation:
            return  # sent before the last change of state: says nothing about this one
        if state is BreakerState.HALF_OPEN:
            if probe:
                self.probing = False
                if success:
                    self._close(now)
                else:
                    self._open(now, self.cooldown * 2)
            return
        if state is not BreakerState.CLOSED:
            return
        self._drop(delivery_id)
        if repeat:
            return
        self._results[delivery_id] = (now, success)
        if success:
            return
        self._failed += 1
        self._forget_results(now)
        counted = len(self._results)
        if (
            counted >= self.policy.min_attempts
            and self._failed >= self.policy.failure_rate * counted
        ):
            flapping = self._closed_at is not None and now - self._closed_at < self.policy.window
            self._open(now, self.cooldown * 2 if flapping else self.policy.cooldown)

    def idle(self, now: float) -> bool:
        """Closed with nothing to remember: the board may forget this breaker."""
        if self.state(now) is not BreakerState.CLOSED:
            return False
        self._forget_results(now)
        self._forget_failing(now)
        return not self._failing and not self._failed

    def reopens_at(self) -> float | None:
        """When an open breaker turns half-open, or None when it is not open."""
        if self._state is BreakerState.OPEN:
            return self.opened_at + self.cooldown
        return None

    def _note(self, delivery_id: str, success: bool, now: float) -> bool:
        """Remember which deliveries fail; True for a failure that is the delivery's own.

        A delivery's failures become its own when it fails again after another delivery to
        the URL succeeded since its previous failure, and stay so until it is delivered or
        forgotten.
        """
        if success:
            self._failing.pop(delivery_id, None)
            self._last_success = max(self._last_success, now)
            return False
        previous = self._failing.pop(delivery_id, None)
        own = previous is not None and (previous[1] or self._last_success > previous[0])
        self._failing[delivery_id] = (now, own)
        while len(self._failing) > FAILING_MEMORY:
            self._failing.popitem(last=False)
        return own

    def _drop(self, delivery_id: str) -> None:
        dropped = self._results.pop(delivery_id, None)
        if dropped is not None and not dropped[1]:
            self._failed -= 1

    def _forget_results(self, now: float) -> None:
        results = self._results
        horizon = now - self.policy.window
        while results and (len(results) > WINDOW_CAP or next(iter(results.values()))[0] < horizon):
            _, (_, ok) = results.popitem(last=False)
            if not ok:
                self._failed -= 1

    def _forget_failing(self, now: float) -> None:
        failing = self._failing
        horizon = now - FAILING_WINDOWS * self.policy.window
        while failing and next(iter(failing.values()))[0] < horizon:
            failing.popitem(last=False)

    def _open(self, now: float, cooldown: float) -> None:
        self._state = BreakerState.OPEN
        self._generation += 1
        self.opened_at = now
        self.cooldown = min(max(cooldown, self.policy.cooldown), self.policy.max_cooldown)
        self.probing = False

    def _close(self, now: float) -> None:
        self._state = BreakerState.CLOSED
        self._generation += 1
        self._closed_at = now
        self._results.clear()
        self._failed = 0


class BreakerBoard:
    """The breakers of every URL the dispatcher talks to.

    Only breakers with something to remember are kept: a closed breaker with no failure in
    its window and no delivery remembered as failing is dropped, so the board stays as small
    as the set of troubled URLs. The breakers that are not closed are also kept apart, as
    they change (a breaker leaves or re-enters ``closed`` only in :meth:`record`): the
    questions asked before every claim (which URLs are blocked, when one may probe) look at
    those alone, so that when many endpoints fail at once each change costs the same.
    """

    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._not_closed: dict[str, CircuitBreaker] = {}

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
        return None if probe is None else Ticket(url, probe, breaker.generation)

    def rotate_probe(self, url: str, delivery_id: str, now: float, others: Iterable[str]) -> bool:
        """Whether ``delivery_id`` should make way for one of ``others`` as ``url``'s probe.

        True when the next request to ``url`` would be the probe, ``delivery_id`` is known to
        fail, and one of ``others`` (deliveries of the same URL waiting to be sent) is not:
        a probe should test the endpoint, not a delivery that fails on its own.
        """
        breaker = self._breakers.get(url)
        if breaker is None or breaker.state(now) is not BreakerState.HALF_OPEN:
            return False
        if breaker.probing or not breaker.failing(delivery_id, now):
            return False
        return any(not breaker.failing(other, now) for other in others)

    def abandon(self, ticket: Ticket) -> None:
        breaker = self._breakers.get(ticket.url)
        if breaker is not None:
            breaker.abandon(ticket.probe, ticket.generation)

    def record(self, ticket: Ticket, delivery_id: str, success: bool, now: float) -> BreakerState:
        """Count the result of one delivery's attempt; return the URL's state after it."""
        breaker = self._breakers.get(ticket.url)
        if breaker is None:
            if success:
                return BreakerState.CLOSED
            breaker = self._breakers[ticket.url] = CircuitBreaker(self.policy)
        breaker.record(ticket.probe, ticket.generation, delivery_id, success, now)
        state = breaker.state(now)
        if state is BreakerState.CLOSED:
            self._not_closed.pop(ticket.url, None)
        else:
            self._not_closed[ticket.url] = breaker
        if breaker.idle(now):
            del self._breakers[ticket.url]
        return state

    def blocked_urls(self, now: float) -> set[str]:
        """URLs that may not be sent to now: open, or half-open with the probe out."""
        return {url for url, breaker in self._not_closed.items() if not breaker.allows(now)}

    def not_closed(self, now: float) -> dict[str, BreakerState]:
        """Every URL whose breaker is open or half-open, with its state."""
        return {url: breaker.state(now) for url, breaker in self._not_closed.items()}

    def next_reopen(self) -> float | None:
        """The earliest time an open breaker turns half-open (time to claim a probe)."""
        times = [t for b in self._not_closed.values() if (t := b.reopens_at()) is not None]
        return min(times, default=None)
