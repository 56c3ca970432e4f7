"""The dispatcher's lanes: which claims it holds, which wait, which are under way.

Plain bookkeeping, no tasks and no clock, so that each rule can be tested on its own (the
dispatcher's docstring tells the story these rules serve):

* **A lane per endpoint.** Claims wait in a queue per endpoint (``scheme://host:port``, the
  same key as the connection pool's per-host limit); a lane runs at most ``per_lane`` POSTs.
* **Bounded holding.** A lane holding ``2 * per_lane`` claims (waiting or under way) is
  *full*: its URLs are left out of the next claims (:meth:`Lanes.full_urls`). One claim batch
  may overshoot that, but a lane never holds more than ``2 * per_lane + claim_batch``: the
  rest is refused (:meth:`Lanes.admit`) and goes back to the store. All lanes together hold
  at most ``max_in_flight + claim_batch`` claims, because the next claim asks for no more
  than :attr:`Lanes.room`.
* **One delivery per queue.** The store hands out only heads of ``(url, order_id)`` queues;
  the lanes also refuse to hold two deliveries of one queue at once, whatever the store says.
  A queue stays held from its claim until its outcome is committed (:meth:`Lanes.let_go`),
  so a successor claimed early by a racing wake-up is refused, not sent alongside.
* **Room promised to commits.** A commit that may hand this node's dispatcher the heads it
  makes (see the dispatcher) has room set aside for them first (:meth:`Lanes.promise`), so
  that claims and hand-overs together never ask for more than :attr:`Lanes.room` allows;
  what they hand over is admitted like any claim.
* **Starved lanes in turn.** A lane with a free slot that finds every global slot
  (``max_in_flight``) taken is *starved*; freed global slots go to starved lanes first, in
  the order they starved (:meth:`Lanes.next_starved`), so one busy lane cannot keep them all.

A claim's life: :meth:`~Lanes.admit` puts it in its lane; :meth:`~Lanes.take` removes the
next one that may start, which the caller then either :meth:`~Lanes.start`\\ s or
:meth:`~Lanes.give_back`\\ s (its lease is too short, its breaker refuses); a started one
ends :meth:`~Lanes.finished` (attempted: an outcome follows) or :meth:`~Lanes.abandon`\\ ed
(not attempted to the end). :meth:`~Lanes.give_back_waiting` returns waiting claims in bulk
(a breaker opened, the dispatcher stops); :meth:`~Lanes.forget_waiting` drops those whose
leases the heartbeat found lost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Final, NamedTuple

from .metrics import endpoint_label
from .store.base import Claim

__all__ = ["IDLE_LANES", "Admitted", "Lane", "Lanes", "QueueKey"]

_LABEL_CACHE: Final = 4096
IDLE_LANES: Final = 4096
"""Idle lanes kept for their endpoints' next claims; beyond that the longest idle go."""

QueueKey = tuple[str, str]
"""``(url, order_id)``: one queue of the outbox, delivered in order."""


class Lane:
    """One endpoint's waiting claims and POSTs under way."""

    __slots__ = ("in_flight", "label", "queue", "starved", "urls")

    def __init__(self, label: str) -> None:
        self.label = label
        self.queue: deque[Claim] = deque()
        self.in_flight = 0
        self.starved = False
        self.urls: dict[str, int] = {}
        """Claims held in this lane (waiting or under way) per URL."""

    @property
    def held(self) -> int:
        return len(self.queue) + self.in_flight

    def waiting_ids(self, url: str) -> Iterator[str]:
        """The ids of the claims of ``url`` waiting here, oldest first."""
        return (claim.id for claim in self.queue if claim.url == url)

    def hold(self, url: str) -> None:
        self.urls[url] = self.urls.get(url, 0) + 1

    def drop(self, url: str) -> None:
        left = self.urls[url] - 1
        if left:
            self.urls[url] = left
        else:
            del self.urls[url]


class Admitted(NamedTuple):
    """What :meth:`Lanes.admit` did with a batch of claims."""

    lanes: list[Lane]
    """Lanes that had nothing waiting and now do: start what may start in them."""
    refused: list[Claim]
    """Claims to give back to the store: their lane is at its bound, or their queue is held
    by another delivery (see :attr:`second_heads`)."""
    second_heads: int
    """How many of :attr:`refused` were a second head of a queue already held: the store
    broke its promise."""


class Lanes:
    """The claims one dispatcher holds, by endpoint. See the module docstring for the rules."""

    def __init__(
        self,
        *,
        per_lane: int,
        max_in_flight: int,
        claim_batch: int,
        label: Callable[[str], str] = endpoint_label,
        idle_lanes: int = IDLE_LANES,
    ) -> None:
        if per_lane < 1 or max_in_flight < 1 or claim_batch < 1:
            raise ValueError("lanes need at least 1 slot per lane, 1 in all and a batch of 1")
        self.per_lane = per_lane
        self.max_in_flight = max_in_flight
        self.claim_batch = claim_batch
        self.lane_full = 2 * per_lane
        self.lane_bound = self.lane_full + claim_batch
        self.held_bound = max_in_flight + claim_batch
        self._label = label
        self._labels: dict[str, str] = {}
        self._lanes: dict[str, Lane] = {}
        self._idle: dict[str, Lane] = {}
        """Lanes that held nothing when last looked at, longest idle first (at most
        ``idle_lanes``): an endpoint sent to again gets its lane back instead of a new one."""
        self._idle_lanes = idle_lanes
        self._queues: dict[QueueKey, str] = {}
        """(url, order_id) -> delivery id, from admission until its outcome is committed."""
        self._starved: deque[Lane] = deque()
        self._waiting = 0
        self._in_flight = 0
        self._promised = 0

    # What is held --------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Claims started and not yet finished or abandoned."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Claims admitted and not yet taken."""
        return self._waiting

    @property
    def held(self) -> int:
        """Claims waiting or under way."""
        return self._waiting + self._in_flight

    @property
    def room(self) -> int:
        """How many claims the next claim may ask for (0 or less: none)."""
        return min(self.claim_batch, self.held_bound - self.held - self._promised)

    def promise(self, at_most: int) -> int:
        """Set aside room for up to ``at_most`` claims a commit may hand over; how many
        (0 when there is no room). :attr:`room` leaves them out until :meth:`unpromise`."""
        promised = max(0, min(at_most, self.room))
        self._promised += promised
        return promised

    def unpromise(self, promised: int) -> None:
        """The commit is over: what it handed over is admitted (or was not), the rest of
        the room it was promised is free again."""
        self._promised -= promised

    def lanes(self) -> list[Lane]:
        return list(self._lanes.values())

    def holder(self, key: QueueKey) -> str | None:
        """The delivery holding the queue ``key``, if any."""
        return self._queues.get(key)

    def in_flight_by_url(self) -> dict[str, int]:
        """POSTs under way to each URL's endpoint, for every URL with a claim held."""
        return {url: lane.in_flight for lane in self._lanes.values() for url in lane.urls}

    def full(self, url: str) -> bool:
        """Whether ``url``'s lane is full (what :meth:`full_urls` tells for one URL)."""
        lane = self._lanes.get(self._label_of(url))
        return lane is not None and lane.held >= self.lane_full

    def full_urls(self) -> set[str]:
        """The URLs of full lanes, which the next claim must leave alone.

        Lanes with nothing held are set aside on the way, so this walk covers only the
        endpoints this node is busy with; the ``idle_lanes`` most recently busy are kept for
        their next claims, however many endpoints the node has ever sent to.
        """
        skip: set[str] = set()
        idle = []
        for label, lane in self._lanes.items():
            if lane.held >= self.lane_full:
                skip.update(lane.urls)
            elif lane.held == 0 and not lane.starved:
                idle.append(label)
        for label in idle:
            self._idle[label] = self._lanes.pop(label)
        while len(self._idle) > self._idle_lanes:
            del self._idle[next(iter(self._idle))]
        return skip

    # A claim's life ------------------------------------------------------------------------
    def admit(self, claims: Iterable[Claim]) -> Admitted:
        """Put fresh claims in their lanes, refusing what the rules refuse.

        A claim whose queue this node already holds *under the same id* is neither admitted
        nor refused: it is the claim held already (sending it twice helps nobody).
        """
        touched: list[Lane] = []
        refused: list[Claim] = []
        second_heads = 0
        for claim in claims:
            key = (claim.url, claim.order_id)
            holder = self._queues.get(key)
            if holder is not None:
                if holder != claim.id:
                    second_heads += 1
                    refused.append(claim)
                continue
            lane = self._lane_of(claim.url)
            if lane.held >= self.lane_bound:
                refused.append(claim)
                continue
            self._queues[key] = claim.id
            lane.hold(claim.url)
            lane.queue.append(claim)
            self._waiting += 1
            if len(lane.queue) == 1:
                touched.append(lane)
        return Admitted(touched, refused, second_heads)

    def take(self, lane: Lane) -> Claim | None:
        """Remove the lane's next claim if it may start now; the caller must then
        :meth:`start` it or :meth:`give_back` it.

        None when nothing waits, the lane runs ``per_lane`` POSTs, or every global slot is
        taken (then the lane is starved, and :meth:`next_starved` hands it back in turn).
        """
        if not lane.queue or lane.in_flight >= self.per_lane:
            return None
        if self._in_flight >= self.max_in_flight:
            if not lane.starved:
                lane.starved = True
                self._starved.append(lane)
            return None
        return lane.queue.popleft()

    def start(self, lane: Lane) -> None:
        """Count the claim just taken from ``lane`` under way (the caller carries it)."""
        self._waiting -= 1
        self._in_flight += 1
        lane.in_flight += 1

    def give_back(self, lane: Lane, claim: Claim) -> None:
        """Forget a taken claim, unattempted: it goes back to the store."""
        self._waiting -= 1
        lane.drop(claim.url)
        self._queues.pop((claim.url, claim.order_id), None)

    def give_back_waiting(self, url: str | None = None) -> list[Claim]:
        """Forget the waiting claims of ``url`` (of every URL when None); return them.

        For a breaker that opened (its URL's waiting claims would only wait for the
        cooldown while holding leases) and for a dispatcher that stops.
        """
        lanes = self._lanes.values() if url is None else [self._lane_of(url)]
        return self._forget_waiting(lanes, lambda claim: url is None or claim.url == url)

    def forget_waiting(self, ids: Collection[str]) -> list[Claim]:
        """Forget the waiting claims among ``ids``; return them. For leases lost to another
        node: such a claim is neither sent nor given back (it is no longer this node's)."""
        return self._forget_waiting(self._lanes.values(), lambda claim: claim.id in ids)

    def _forget_waiting(self, lanes: Iterable[Lane], which: Callable[[Claim], bool]) -> list[Claim]:
        given: list[Claim] = []
        for lane in lanes:
            keep: deque[Claim] = deque()
            while lane.queue:
                claim = lane.queue.popleft()
                if which(claim):
                    self.give_back(lane, claim)
                    given.append(claim)
                else:
                    keep.append(claim)
            lane.queue = keep
        return given

    def finished(self, lane: Lane, claim: Claim) -> None:
        """A started claim was attempted: free its slot. Its queue stays held until
        :meth:`let_go`, when its outcome is committed."""
        self._in_flight -= 1
        lane.in_flight -= 1
        lane.drop(claim.url)

    def abandon(self, lane: Lane, claim: Claim) -> None:
        """A started claim was not attempted to the end: forget it; it goes back."""
        self.finished(lane, claim)
        self._queues.pop((claim.url, claim.order_id), None)

    def next_starved(self) -> Lane | None:
        """The lane that starved first, while a global slot is free; None otherwise."""
        if not self._starved or self._in_flight >= self.max_in_flight:
            return None
        lane = self._starved.popleft()
        lane.starved = False
        return lane

    # Committed outcomes --------------------------------------------------------------------
    def let_go(self, settled: Iterable[tuple[QueueKey, str]]) -> list[tuple[QueueKey, str]]:
        """Forget the queues whose heads are settled by ``(queue, delivery id)``; return
        what was forgotten (for :meth:`hold_again` should the commit fail).

        Call it *before* the outcomes commit: the commit makes each queue's next head
        claimable, and a wake-up may claim it before the commit's answer arrives.
        """
        let_go = []
        for key, delivery_id in settled:
            if self._queues.get(key) == delivery_id:
                del self._queues[key]
                let_go.append((key, delivery_id))
        return let_go

    def hold_again(self, let_go: Iterable[tuple[QueueKey, str]]) -> None:
        """The outcomes did not commit: their heads are still this node's."""
        for key, delivery_id in let_go:
            self._queues.setdefault(key, delivery_id)

    def _label_of(self, url: str) -> str:
        label = self._labels.get(url)
        if label is None:
            if len(self._labels) >= _LABEL_CACHE:
                self._labels.clear()
            label = self._labels[url] = self._label(url)
        return label

    def _lane_of(self, url: str) -> Lane:
        label = self._label_of(url)
        lane = self._lanes.get(label)
        if lane is None:
            lane = self._idle.pop(label, None)
            if lane is None:
                lane = Lane(label)
            self._lanes[label] = lane
        return lane
