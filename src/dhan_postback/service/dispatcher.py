"""The delivery engine: committed outbox rows in, signed POSTs out, in order, until a 2xx.

How one delivery travels::

    store.claim ──> lane queue (per endpoint) ──> POST ──> Outcome ──> store.finish (batched)
         ^                                                                  │
         └───────── woken: by wake() after an ingest commit, by each finish ┘

* **Claim loop.** One task leases due queue heads in batches (``settings.claim_batch``). It
  is woken at once by :meth:`Dispatcher.wake` (the ingest calls it after each commit) and
  by every flushed batch of outcomes (successors come due, slots are free); when nothing
  wakes it, it sleeps until a retry comes due (the store's ``next_due()`` and the retry
  times this node wrote) or a breaker may probe, or at most ``idle_poll`` seconds (work
  committed by other nodes). A store that can tell when another node commits work has a
  ``listen_wakeups(callback)`` async context manager (PostgreSQL, by LISTEN/NOTIFY): the
  dispatcher listens while it runs, so such commits wake it at once, and the poll is only
  a safety net.
* **Lanes.** Claims wait in a small queue per endpoint (``scheme://host:port``, the same key
  as the connection pool's per-host limit). A lane runs at most
  ``settings.max_in_flight_per_url`` POSTs; once it holds as many more waiting, it is full
  and its URLs are left out of the next claims (``skip_urls``). One claim batch may
  overshoot that (a lane never holds more than ``2 * max_in_flight_per_url + claim_batch``;
  the rest is given back), so a slow or black-holed endpoint holds a bounded number of
  slots and leases and never stalls the others. Free global slots
  (``settings.max_in_flight``) go to starved lanes in turn; all lanes together hold at most
  ``max_in_flight + claim_batch`` claims.
* **Order.** The store hands out only heads of ``(url, order_id)`` queues; the dispatcher
  also refuses to hold two deliveries of one queue at once, whatever the store says.
* **Breakers.** One per URL (:mod:`.breaker`), judging it by the failure rate of its recent
  deliveries: an open URL is skipped in claims and its waiting claims are given back; after
  the cooldown one probe goes, and a delivery known to fail makes way for another waiting
  head of the same URL, so probes rotate over different orders.
* **Outcomes.** Each attempt becomes an :class:`~.store.base.Outcome` (:mod:`.retry` decides
  delivered / retry at / dead); outcomes and give-backs are written in batches, one
  ``store.finish`` per batch, every ``flush_interval`` or ``claim_batch`` outcomes.
* **Leases.** A claim is sent only while its lease has room for a whole attempt
  (``timeout`` plus a tenth of the lease); otherwise it is given back, so that a delivery is
  never sent by two nodes at once except after a crash.
* **Shutdown.** Leaving the context stops claiming, gives back waiting claims, lets the POSTs
  under way finish for up to ``settings.shutdown_grace``, cancels and gives back the rest,
  and flushes every outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Final

import aiohttp
import structlog
from prometheus_client import Counter, Gauge

from .._version import __version__
from ..errors import DhanPostbackError
from ..settings import ServiceSettings
from ..signing import Signer
from ..urlpolicy import GuardedResolver
from .breaker import BreakerBoard, BreakerPolicy, BreakerState, Ticket
from .metrics import ServiceMetrics, endpoint_label
from .retry import (
    RESPONSE_PREFIX_BYTES,
    RETRY_AFTER_STATUSES,
    decide,
    make_attempt,
    parse_retry_after,
)
from .store.base import Attempt, Claim, Outcome, Store

__all__ = ["DRAIN_LIMIT", "USER_AGENT", "Clock", "Dispatcher"]

log = structlog.get_logger(__name__)

USER_AGENT: Final = f"dhan-postback/{__version__}"
DRAIN_LIMIT: Final = 64 * 1024
"""Bytes of a response read to keep its connection; a larger body closes the connection."""
_CACHE_LIMIT: Final = 4096
_RETRY_MEMORY: Final = 100_000
"""Retry times remembered for waking; beyond that, ``idle_poll`` finds them."""
_STORE_RETRY_DELAYS: Final = (0.05, 0.2, 1.0)

Clock = Callable[[], float]


class _Lane:
    """One endpoint's waiting claims and POSTs under way."""

    __slots__ = (
        "dead",
        "delivered",
        "failed",
        "in_flight",
        "in_flight_gauge",
        "label",
        "queue",
        "starved",
        "urls",
    )

    def __init__(self, label: str, metrics: ServiceMetrics | None) -> None:
        self.label = label
        self.queue: deque[Claim] = deque()
        self.in_flight = 0
        self.starved = False
        self.urls: dict[str, int] = {}
        """Claims held in this lane (waiting or under way) per URL."""
        self.delivered: Counter | None = None
        self.failed: Counter | None = None
        self.dead: Counter | None = None
        self.in_flight_gauge: Gauge | None = None
        if metrics is not None:
            self.delivered = metrics.delivered.labels(label)
            self.failed = metrics.failed_attempts.labels(label)
            self.dead = metrics.dead.labels(label)
            self.in_flight_gauge = metrics.in_flight.labels(label)

    @property
    def held(self) -> int:
        return len(self.queue) + self.in_flight

    def hold(self, url: str) -> None:
        self.urls[url] = self.urls.get(url, 0) + 1

    def drop(self, url: str) -> None:
        left = self.urls[url] - 1
        if left:
            self.urls[url] = left
        else:
            del self.urls[url]


class Dispatcher:
    """Sends the outbox. Use as ``async with Dispatcher(store, settings) as dispatcher:``.

    ``session`` replaces the dispatcher's own :class:`aiohttp.ClientSession` (it is then not
    closed here); ``clock`` gives the wall-clock times written to the store; ``idle_poll``
    bounds the sleep when nothing wakes the claim loop; ``flush_interval`` is how long a
    finished attempt may wait to be written with others; ``rng`` draws the retry jitter.
    """

    def __init__(
        self,
        store: Store,
        settings: ServiceSettings,
        *,
        metrics: ServiceMetrics | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Clock = time.time,
        idle_poll: float = 1.0,
        flush_interval: float = 0.002,
        rng: random.Random | None = None,
    ) -> None:
        self._min_lease_left = settings.timeout + settings.lease / 10
        if settings.lease <= self._min_lease_left:
            raise ValueError(
                "lease must be longer than timeout plus a tenth of itself "
                f"(lease {settings.lease:g}s, timeout {settings.timeout:g}s)"
            )
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._idle_poll = idle_poll
        self._flush_interval = flush_interval
        self._rng = rng or random.Random()
        self._lane_cap = settings.max_in_flight_per_url
        self._lane_full = 2 * settings.max_in_flight_per_url
        self._lane_room = self._lane_full + settings.claim_batch
        self._held_cap = settings.max_in_flight + settings.claim_batch
        self.breakers = BreakerBoard(
            BreakerPolicy(
                failure_rate=settings.breaker_failure_rate,
                min_attempts=settings.breaker_min_attempts,
                window=settings.breaker_window,
                cooldown=settings.breaker_cooldown,
                max_cooldown=max(settings.breaker_max_cooldown, settings.breaker_cooldown),
            )
        )

        self._lanes: dict[str, _Lane] = {}
        self._labels: dict[str, str] = {}
        self._signers: dict[str, Signer] = {}
        self._held: dict[tuple[str, str], str] = {}
        """(url, order_id) -> delivery id, from claim until its outcome is written."""
        self._waiting = 0
        self._in_flight = 0
        self._workers: set[asyncio.Task[None]] = set()
        self._idle_workers: deque[asyncio.Future[None]] = deque()
        self._jobs: deque[tuple[_Lane, Claim, Ticket]] = deque()
        """Attempts counted in flight by :meth:`_pump`, not yet picked up by a worker."""
        self._workers_closing = False
        self._starved: deque[_Lane] = deque()
        self._outcomes: list[tuple[Outcome, tuple[str, str]]] = []
        self._retry_times: list[float] = []
        self._next_due: float | None = None
        self._next_due_asked = float("-inf")
        """A heap of the retry times this node wrote, to wake the claim loop for them."""
        self._releases: list[str] = []
        self._wakeup = asyncio.Event()
        self._flush_wanted = asyncio.Event()
        self._stopping = False
        self._final = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._claim_task: asyncio.Task[None] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._listening = contextlib.AsyncExitStack()

    # Lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> Dispatcher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._claim_task is not None:
            raise RuntimeError("the dispatcher is already running")
        self._loop = asyncio.get_running_loop()
        if self._session is None:
            self._session = self._make_session()
        await self._listen_to_other_nodes()
        self._claim_task = asyncio.create_task(self._claim_loop(), name="dispatcher-claim")
        self._flush_task = asyncio.create_task(self._flush_loop(), name="dispatcher-flush")
        log.info(
            "dispatcher started",
            max_in_flight=self.settings.max_in_flight,
            max_in_flight_per_url=self._lane_cap,
        )

    async def close(self) -> None:
        """Stop claiming, let POSTs under way finish (``shutdown_grace``), give back the rest."""
        if self._claim_task is None or self._stopping:
            return
        self._stopping = True
        self._wakeup.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._claim_task
        await self._listening.aclose()
        for lane in list(self._lanes.values()):
            while lane.queue:
                self._give_back(lane, lane.queue.popleft())
        self._workers_closing = True
        while self._idle_workers:
            self._idle_workers.popleft().set_result(None)
        workers = set(self._workers)
        if workers:
            _, unfinished = await asyncio.wait(workers, timeout=self.settings.shutdown_grace)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
            abandoned = len(self._jobs)
            while self._jobs:
                self._abandon(*self._jobs.popleft())
            if unfinished or abandoned:
                log.warning(
                    "dispatcher gave back unfinished POSTs", count=len(unfinished) + abandoned
                )
        self._final = True
        self._flush_wanted.set()
        if self._flush_task is not None:
            await self._flush_task
        if self._owns_session and self._session is not None:
            await self._session.close()
        log.info("dispatcher stopped")

    async def _listen_to_other_nodes(self) -> None:
        """Be woken by other nodes' commits, when the store can tell (see the docstring)."""
        listen: Callable[[Callable[[], None]], contextlib.AbstractAsyncContextManager[None]] | None
        listen = getattr(self.store, "listen_wakeups", None)
        if listen is None:
            return
        try:
            await self._listening.enter_async_context(listen(self.wake))
        except DhanPostbackError as exc:
            log.warning("not woken by other nodes, polling instead", error=exc.message)

    def wake(self) -> None:
        """Claim now: new deliveries were committed. Never blocks; any thread may call it."""
        loop = self._loop
        if loop is None:
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            self._wakeup.set()
        else:
            loop.call_soon_threadsafe(self._wakeup.set)

    def _make_session(self) -> aiohttp.ClientSession:
        settings = self.settings
        guard = GuardedResolver(allow_loopback=settings.allow_loopback)
        connector = aiohttp.TCPConnector(
            **guard.guard_connector_kwargs(
                limit=settings.max_in_flight, limit_per_host=settings.max_in_flight_per_url
            )
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=settings.timeout),
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
        )

    # What the dispatcher holds -------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """POSTs under way right now."""
        return self._in_flight

    @property
    def held(self) -> int:
        """Claims held: waiting in lanes or under way."""
        return self._waiting + self._in_flight

    def endpoint_states(self) -> list[tuple[str, BreakerState, int]]:
        """(url, breaker state, POSTs under way to its endpoint) for every URL this node is
        busy with or whose breaker is not closed."""
        now = self._clock()
        in_flight: dict[str, int] = {}
        for lane in self._lanes.values():
            for url in lane.urls:
                in_flight[url] = lane.in_flight
        for url in self.breakers.not_closed(now):
            in_flight.setdefault(url, 0)
        return [(url, self.breakers.state(url, now), n) for url, n in sorted(in_flight.items())]

    def _lane_of(self, url: str) -> _Lane:
        label = self._labels.get(url)
        if label is None:
            if len(self._labels) >= _CACHE_LIMIT:
                self._labels.clear()
            label = self._labels[url] = endpoint_label(url)
        lane = self._lanes.get(label)
        if lane is None:
            lane = self._lanes[label] = _Lane(label, self.metrics)
        return lane

    def _signer(self, secret: str) -> Signer:
        signer = self._signers.get(secret)
        if signer is None:
            if len(self._signers) >= _CACHE_LIMIT:
                self._signers.clear()
            signer = self._signers[secret] = Signer(secret)
        return signer

    def _signature(self, claim: Claim, timestamp: int) -> str:
        """The ``webhook-signature`` value: the endpoint's secret, then (during a rotation's
        grace period) each retired one, space-separated, as Standard Webhooks allows."""
        signature = self._signer(claim.signing_secret).signature(claim.id, timestamp, claim.payload)
        if not claim.previous_secrets:
            return signature
        older = (
            self._signer(secret).signature(claim.id, timestamp, claim.payload)
            for secret in claim.previous_secrets
        )
        return " ".join((signature, *older))

    # Claiming ------------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        while not self._stopping:
            try:
                await self._claim_loop_body()
            except Exception:  # a bug must not stop delivery for good
                log.exception("claim loop failed; restarting it")
                await asyncio.sleep(_STORE_RETRY_DELAYS[-1])

    async def _claim_loop_body(self) -> None:
        failures = 0
        while not self._stopping:
            self._wakeup.clear()
            limit = min(self.settings.claim_batch, self._held_cap - self.held)
            claimed_at: float | None = None
            full = False
            if limit > 0:
                claimed_at = self._clock()
                try:
                    claims = await self.store.claim(
                        limit=limit,
                        now=claimed_at,
                        lease=self.settings.lease,
                        skip_urls=self._skip_urls(claimed_at),
                    )
                except Exception:
                    failures += 1
                    log.exception("claim failed", failures=failures)
                    await self._sleep_or_wake(_STORE_RETRY_DELAYS[min(failures, 3) - 1])
                    continue
                failures = 0
                if self._stopping:
                    self._releases.extend(claim.id for claim in claims)
                    self._flush_wanted.set()
                    break
                self._admit(claims)
                full = len(claims) >= limit
            if full:
                await asyncio.sleep(0)  # let the POSTs start, then claim the rest
                continue
            await self._idle(claimed_at)

    def _skip_urls(self, now: float) -> set[str]:
        """URLs the next claim must leave alone: paused by a breaker, or their lane is full.

        Lanes with nothing held are dropped on the way, so the dispatcher keeps only the
        endpoints it is busy with, however many it has ever sent to.
        """
        skip = self.breakers.blocked_urls(now)
        idle = []
        for label, lane in self._lanes.items():
            if lane.held >= self._lane_full:
                skip.update(lane.urls)
            elif lane.held == 0 and not lane.starved:
                idle.append(label)
        for label in idle:
            del self._lanes[label]
        return skip

    async def _idle(self, claimed_at: float | None) -> None:
        """Sleep until woken, a retry comes due, a breaker may probe, or ``idle_poll``."""
        now = self._clock()
        wait = self._idle_poll
        # What this node does itself (commits it is told of, outcomes it wrote, breakers)
        # wakes it directly; the store's next_due is for the rest (another node's retries,
        # the leases of a node that died), so asking once per idle_poll is enough.
        if now - self._next_due_asked >= self._idle_poll:
            self._next_due_asked = now
            try:
                self._next_due = await self.store.next_due()
            except Exception:
                log.exception("next_due failed")
                self._next_due = None
        due = self._next_due
        # Due after the last claim looked: claim it then. Due before: it was not claimable
        # (a head under way, a skipped URL); what frees it wakes this loop.
        looked = now if claimed_at is None else claimed_at
        if due is not None and due > looked:
            wait = min(wait, due - now)
        retries = self._retry_times
        while retries and retries[0] <= looked:
            heapq.heappop(retries)
        if retries:
            wait = min(wait, retries[0] - now)
        reopen = self.breakers.next_reopen()
        if reopen is not None:
            wait = min(wait, reopen - now)
        await self._sleep_or_wake(wait)

    async def _sleep_or_wake(self, seconds: float) -> None:
        if seconds <= 0 or self._wakeup.is_set():
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)

    def _admit(self, claims: Iterable[Claim]) -> None:
        """Put fresh claims in their lanes and start what may start."""
        touched: list[_Lane] = []
        for claim in claims:
            key = (claim.url, claim.order_id)
            holder = self._held.get(key)
            if holder is not None:
                if holder != claim.id:
                    log.error("store handed out a second head of one queue; giving it back")
                    self._releases.append(claim.id)
                    self._flush_wanted.set()
                continue  # same id: a claim we hold already; sending it twice helps nobody
            lane = self._lane_of(claim.url)
            if lane.held >= self._lane_room:
                self._releases.append(claim.id)
                self._flush_wanted.set()
                continue
            self._held[key] = claim.id
            lane.hold(claim.url)
            lane.queue.append(claim)
            self._waiting += 1
            if len(lane.queue) == 1:
                touched.append(lane)
        for lane in touched:
            self._pump(lane)

    def _give_back(self, lane: _Lane, claim: Claim) -> None:
        """Return a waiting claim to the store unattempted."""
        self._waiting -= 1
        lane.drop(claim.url)
        self._held.pop((claim.url, claim.order_id), None)
        self._releases.append(claim.id)
        self._flush_wanted.set()

    # Sending -------------------------------------------------------------------------------
    def _pump(self, lane: _Lane) -> None:
        """Start the lane's waiting claims while it and the dispatcher have free slots."""
        max_in_flight = self.settings.max_in_flight
        while lane.queue and lane.in_flight < self._lane_cap:
            if self._in_flight >= max_in_flight:
                if not lane.starved:
                    lane.starved = True
                    self._starved.append(lane)
                return
            claim = lane.queue.popleft()
            now = self._clock()
            ticket = None
            if claim.lease_until - now >= self._min_lease_left and not self._makes_way(
                lane, claim, now
            ):
                ticket = self.breakers.acquire(claim.url, now)
            if ticket is None:  # lease too short, another probe is better, or the breaker waits
                self._give_back(lane, claim)
                continue
            self._waiting -= 1
            self._in_flight += 1
            lane.in_flight += 1
            if lane.in_flight_gauge is not None:
                lane.in_flight_gauge.inc()
            self._jobs.append((lane, claim, ticket))
            if self._idle_workers:
                self._idle_workers.popleft().set_result(None)
            else:
                worker = asyncio.create_task(self._worker(), name="dispatcher-worker")
                self._workers.add(worker)
                worker.add_done_callback(self._workers.discard)

    def _makes_way(self, lane: _Lane, claim: Claim, now: float) -> bool:
        """Whether ``claim``, known to fail, should let another waiting claim be the probe.

        Probes rotate over different orders' heads: a delivery that fails on its own (a body
        its receiver refuses) must not be the oldest due head at every probe and keep its
        endpoint paused for everyone. It goes back to the store, due as its schedule says.
        """
        others = (other.id for other in lane.queue if other.url == claim.url)
        return self.breakers.rotate_probe(claim.url, claim.id, now, others)

    async def _worker(self) -> None:
        """Runs attempts one after another: one task per POST slot, not one per POST.

        :meth:`_pump` counts an attempt in flight and queues it; a worker that finishes an
        attempt takes the next one at once, so under load no task or future is made per POST.
        Idle workers wait on a future of their own; there are never more workers than
        attempts in flight at the busiest moment (at most ``max_in_flight``).
        """
        loop = asyncio.get_running_loop()
        jobs = self._jobs
        while True:
            if not jobs:
                if self._workers_closing:
                    return
                idle: asyncio.Future[None] = loop.create_future()
                self._idle_workers.append(idle)
                try:
                    await idle
                except asyncio.CancelledError:
                    with contextlib.suppress(ValueError):
                        self._idle_workers.remove(idle)
                    raise
                continue
            lane, claim, ticket = jobs.popleft()
            try:
                await self._attempt(lane, claim, ticket)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: keep the worker for the next attempts
                log.exception("an attempt failed unexpectedly")

    def _pump_starved(self) -> None:
        while self._starved and self._in_flight < self.settings.max_in_flight:
            lane = self._starved.popleft()
            lane.starved = False
            self._pump(lane)

    async def _attempt(self, lane: _Lane, claim: Claim, ticket: Ticket) -> None:
        """Send one claim, then record what happened."""
        try:
            attempt, retry_after = await self._post(claim)
        except asyncio.CancelledError:
            # Shutdown ran out of grace: give it back; it goes again, same webhook-id.
            self._abandon(lane, claim, ticket)
            raise
        now = self._clock()
        outcome = decide(
            attempt,
            round_attempts=claim.round_attempts,
            schedule=self.settings.retry_schedule,
            now=now,
            retry_after=retry_after,
            rng=self._rng,
        )
        self._slot_freed(lane)
        lane.drop(claim.url)
        self._outcomes.append((outcome, (claim.url, claim.order_id)))
        if len(self._outcomes) == 1 or len(self._outcomes) >= self.settings.claim_batch:
            self._flush_wanted.set()
        try:
            self._count(lane, attempt, outcome)
            before = self.breakers.state(claim.url, now)
            after = self.breakers.record(ticket, claim.id, outcome.result == "delivered", now)
            if after is not before:
                self._breaker_changed(lane, claim.url, after)
        except Exception:  # bookkeeping must never strand a slot or an outcome
            log.exception("recording an attempt failed")
        # Lanes starved of a global slot go first, so one busy lane cannot keep them all.
        self._pump_starved()
        self._pump(lane)
        # No wake here: the flush of this outcome follows within flush_interval and wakes
        # the claim loop once for the whole batch (successors and freed slots together).

    def _abandon(self, lane: _Lane, claim: Claim, ticket: Ticket) -> None:
        """Give back a claim counted in flight but not attempted to the end."""
        self._slot_freed(lane)
        lane.drop(claim.url)
        self._held.pop((claim.url, claim.order_id), None)
        self.breakers.abandon(ticket)
        self._releases.append(claim.id)
        self._flush_wanted.set()

    def _slot_freed(self, lane: _Lane) -> None:
        self._in_flight -= 1
        lane.in_flight -= 1
        if lane.in_flight_gauge is not None:
            lane.in_flight_gauge.dec()

    def _count(self, lane: _Lane, attempt: Attempt, outcome: Outcome) -> None:
        if self.metrics is None:
            return
        self.metrics.attempt_latency.observe(attempt.latency_ms / 1000)
        if outcome.result == "delivered":
            if lane.delivered is not None:
                lane.delivered.inc()
            return
        if lane.failed is not None:
            lane.failed.inc()
        if outcome.result == "dead" and lane.dead is not None:
            lane.dead.inc()

    def _breaker_changed(self, lane: _Lane, url: str, state: BreakerState) -> None:
        """Open: give back the URL's waiting claims. Any change: update the gauge."""
        if state is BreakerState.OPEN:
            keep: deque[Claim] = deque()
            while lane.queue:
                claim = lane.queue.popleft()
                if claim.url == url:
                    self._give_back(lane, claim)
                else:
                    keep.append(claim)
            lane.queue = keep
            log.warning("circuit breaker opened", endpoint=lane.label)
        elif state is BreakerState.CLOSED:
            log.info("circuit breaker closed", endpoint=lane.label)
        if self.metrics is not None:
            now = self._clock()
            troubled = {endpoint_label(url) for url in self.breakers.not_closed(now)}
            self.metrics.breaker_open.labels(lane.label).set(1 if lane.label in troubled else 0)

    async def _post(self, claim: Claim) -> tuple[Attempt, float | None]:
        """One POST: the stored bytes, signed. Never raises except on cancellation."""
        session = self._session
        assert session is not None, "the dispatcher is not started"
        started_at = self._clock()
        timestamp = int(started_at)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": claim.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self._signature(claim, timestamp),
        }
        status: int | None = None
        error: str | None = None
        body: bytes | None = None
        retry_after: str | None = None
        began = time.perf_counter()
        try:
            async with session.post(
                claim.url, data=claim.payload, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                if status in RETRY_AFTER_STATUSES:
                    retry_after = response.headers.get("Retry-After")
                body = await _read_prefix(response)
        except TimeoutError:
            error = f"timeout: no complete answer within {self.settings.timeout:g}s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except DhanPostbackError as exc:  # e.g. URLRefused by the resolver at connect time
            error = f"{type(exc).__name__}: {exc.message}"
        except Exception as exc:  # a bug or an oddity: record it, never lose the delivery
            error = f"{type(exc).__name__}: {exc}"
        latency_ms = (time.perf_counter() - began) * 1000
        attempt = make_attempt(
            claim.id,
            claim.attempts + 1,
            started_at=started_at,
            latency_ms=latency_ms,
            status_code=status,
            error=error,
            response_body=body,
        )
        seconds = None
        if retry_after is not None and error is None:
            seconds = parse_retry_after(
                retry_after, now=self._clock(), cap=self.settings.retry_after_cap
            )
        return attempt, seconds

    # Writing outcomes ----------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            await self._flush_wanted.wait()
            if not self._final and len(self._outcomes) < self.settings.claim_batch:
                await asyncio.sleep(self._flush_interval)  # let a batch gather
            self._flush_wanted.clear()
            if await self._flush_once():
                failures = 0
            else:
                failures += 1
                if self._final and failures >= len(_STORE_RETRY_DELAYS):
                    log.error(
                        "could not write outcomes at shutdown; their leases will expire",
                        outcomes=len(self._outcomes),
                        releases=len(self._releases),
                    )
                    return
                await asyncio.sleep(_STORE_RETRY_DELAYS[min(failures, 3) - 1])
                self._flush_wanted.set()
                continue
            if self._final and not self._outcomes and not self._releases:
                return

    async def _flush_once(self) -> bool:
        """Write pending outcomes and give-backs; False (and keep them) when the store fails."""
        outcomes, self._outcomes = self._outcomes, []
        if outcomes:
            # Let go of each queue *before* its outcome commits: the commit makes the queue's
            # next head claimable, and its wake-up (PostgreSQL's NOTIFY reaches this node too)
            # can run a claim that returns that head before ``finish`` has returned here.
            let_go = self._let_go(outcomes)
            try:
                await self.store.finish([outcome for outcome, _ in outcomes])
            except Exception:
                log.exception("finish failed", outcomes=len(outcomes))
                self._outcomes[:0] = outcomes
                for key, delivery_id in let_go:  # not committed: the heads are still ours
                    self._held.setdefault(key, delivery_id)
                return False
            for outcome, _ in outcomes:
                if outcome.next_attempt_at is not None and len(self._retry_times) < _RETRY_MEMORY:
                    heapq.heappush(self._retry_times, outcome.next_attempt_at)
        releases, self._releases = self._releases, []
        if releases:
            try:
                await self.store.release(releases)
            except Exception:
                log.exception("release failed", deliveries=len(releases))
                self._releases[:0] = releases
                return False
        if outcomes or releases:
            self._wakeup.set()
        return True

    def _let_go(
        self, outcomes: Sequence[tuple[Outcome, tuple[str, str]]]
    ) -> list[tuple[tuple[str, str], str]]:
        """Forget the queues whose heads these outcomes settle; what was forgotten.

        Until the store commits an outcome the head stays leased, so no claim can return its
        successor early; from the commit on, the successor is the queue's legitimate head.
        """
        let_go = []
        for outcome, key in outcomes:
            if self._held.get(key) == outcome.delivery_id:
                del self._held[key]
                let_go.append((key, outcome.delivery_id))
        return let_go


async def _read_prefix(response: aiohttp.ClientResponse) -> bytes:
    """Read a small answer whole (so its connection is reused); keep its first bytes.

    An answer larger than :data:`DRAIN_LIMIT` is not worth reading: its connection is
    closed instead.
    """
    prefix = b""
    total = 0
    while chunk := await response.content.readany():
        if len(prefix) < RESPONSE_PREFIX_BYTES:
            prefix += chunk[: RESPONSE_PREFIX_BYTES - len(prefix)]
        total += len(chunk)
        if total > DRAIN_LIMIT:
            response.close()
            break
    return prefix
