"""The delivery engine: committed outbox rows in, signed POSTs out, in order, until a 2xx.

How one delivery travels::

    ingest: store.enqueue ─┐ (hands over the new heads)
    store.claim ───────────┼──> lane queue (per endpoint) ──> POST ──> Outcome
         ^                 │                                             │
         │                 └── store.finish (batched) <──────────────────┘
         │                     (hands over each finished queue's successor)
         └── woken for what was not handed over: the rest of an ingest,
             retries, give-backs, backlog, other nodes' work

* **Hand-overs.** The commits this node makes lease the heads they make to this dispatcher
  in the same transaction, and hand them over in memory: the ingest's enqueue
  (:meth:`Dispatcher.enqueue`) the first update of each new queue, each batch of outcomes
  (``store.finish``) the successor of every queue whose head was delivered or died. So an
  order's chain of updates never waits for a claim. A hand-over takes no more than the lanes
  have room for (set aside while the commit runs) and nothing a claim would skip now (a
  full lane, a breaker that refuses, a paused endpoint, not due); the rest stays unleased
  for the claim loop. The heads are admitted to the lanes exactly as claimed ones.
* **Claim loop.** One task leases due queue heads in batches (``settings.claim_batch``): for
  retries, other nodes' work, leases that ran out and the backlog a hand-over had no room
  for. It is woken at once by :meth:`Dispatcher.wake` (an ingest that could not hand over
  all its heads, a resumed endpoint) and by a flushed batch of outcomes unless the last
  claim found the store drained and the batch handed over every successor; when nothing
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
  ``max_in_flight + claim_batch`` claims. This bookkeeping is :class:`~.lanes.Lanes`, a
  plain class with no tasks and no clock, where each of these rules is unit-tested.
* **Order.** The store hands out (by claim or hand-over) only heads of ``(url, order_id)``
  queues; the dispatcher also refuses to hold two deliveries of one queue at once, whatever
  the store says.
* **Breakers.** One per URL (:mod:`.breaker`), judging it by the failure rate of its recent
  deliveries: an open URL is skipped in claims and its waiting claims are given back; after
  the cooldown one probe goes, and a delivery known to fail makes way for another waiting
  head of the same URL, so probes rotate over different orders.
* **Sending.** Each POST goes through a :class:`~.sender.Sender` (:class:`~.h1.H1Sender`, a
  lean HTTP/1.1 client, by default; aiohttp's when given a session; a
  :class:`~.sender.MockSender` in tests where HTTP is not the point).
* **Outcomes.** Each attempt becomes an :class:`~.store.base.Outcome` (:mod:`.retry` decides
  delivered / retry at / dead); outcomes and give-backs are written in batches, one
  ``store.finish`` per batch, every ``flush_interval`` or ``claim_batch`` outcomes.
* **Leases and the heartbeat.** A claim is leased for ``settings.lease`` (10 s by default)
  and held (:class:`~.leases.Leases`) from the moment it reaches the dispatcher, however it
  was claimed, until its outcome or give-back is committed. A heartbeat task renews every
  lease held every third of the lease (:meth:`Dispatcher.renew_leases`), so that a POST
  may take longer than the lease (``timeout`` is free of it) and a lease never runs out
  under a slow receiver, while the leases of a node that died run out within one lease. A
  claim starts only while at least half its lease is left: the heartbeat is keeping up. A
  renewal the store refuses means the lease was lost (it ran out, say the node could not
  reach the store, and another node claimed the delivery, or a replay reset it). The rule
  then: **what was lost is another node's**. A lost claim still waiting is dropped, never
  sent and never given back; one started but not yet under way is dropped the same way;
  one under way finishes, and its attempt is logged as a warning (it may reach the
  receiver twice) but its outcome is not written, since the delivery's new holder writes
  its own; a lost delivery whose outcome is already waiting to be written is dropped from
  the batch, also with a warning. The store keeps the same rule when it writes: each
  outcome and give-back names the lease it was held under (``store.finish(held=...)``),
  and one whose lease is not the delivery's any more (the node stalled for longer than the
  lease, so no renewal could tell it, and another node claimed the delivery) is only
  logged: the new holder's lease, the delivery's status and its queue are left alone, and
  no successor is handed over, so one queue never has two deliveries in flight. Those are
  counted (``dhan_postback_leases_lost_total``) and logged once per batch. So a delivery
  goes to its receiver twice only after a crash (between a POST and the commit of its
  outcome) or when a node stalls or loses the store for a whole lease while its POST is
  under way.
* **Shutdown.** Leaving the context stops claiming, gives back waiting claims, lets the POSTs
  under way finish for up to ``settings.shutdown_grace``, cancels and gives back the rest,
  and flushes every outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import random
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Final, TypeVar

import aiohttp
import structlog

from .._version import __version__
from ..errors import DhanPostbackError
from ..settings import ServiceSettings
from ..signing import Signer
from .breaker import BreakerBoard, BreakerPolicy, BreakerState, Ticket
from .events import EndpointWatch
from .h1 import H1Sender
from .lanes import Lane, Lanes, QueueKey
from .leases import Leases
from .metrics import ServiceMetrics
from .retry import decide, make_attempt, parse_retry_after
from .sender import AiohttpSender, Request, Sender, SendError
from .store.base import Attempt, Claim, HandOver, Held, NewDelivery, Outcome, Store

__all__ = ["USER_AGENT", "Clock", "Dispatcher"]

log = structlog.get_logger(__name__)

USER_AGENT: Final = f"dhan-postback/{__version__}"
_CACHE_LIMIT: Final = 4096
_RETRY_MEMORY: Final = 100_000
"""Retry times remembered for waking; beyond that, ``idle_poll`` finds them."""
_STORE_RETRY_DELAYS: Final = (0.05, 0.2, 1.0)
_LOST_IDS_LOGGED: Final = 20
"""Delivery ids named in one warning about lost leases (the count says how many in all)."""

Clock = Callable[[], float]
K = TypeVar("K")
V = TypeVar("V")


class _Meters:
    """One endpoint's metric children, looked up once rather than at every attempt."""

    __slots__ = ("dead", "delivered", "failed", "in_flight")

    def __init__(self, metrics: ServiceMetrics, label: str) -> None:
        self.delivered = metrics.delivered.labels(label)
        self.failed = metrics.failed_attempts.labels(label)
        self.dead = metrics.dead.labels(label)
        self.in_flight = metrics.in_flight.labels(label)


class Dispatcher:
    """Sends the outbox. Use as ``async with Dispatcher(store, settings) as dispatcher:``.

    ``sender`` replaces the dispatcher's own :class:`~.h1.H1Sender` (a
    :class:`~.sender.MockSender` in unit tests), ``session`` makes it an
    :class:`~.sender.AiohttpSender` on that aiohttp session; either is then not closed here.
    ``clock`` gives the wall-clock times written to the store; ``idle_poll`` bounds the sleep
    when nothing wakes the claim loop;
    ``flush_interval`` is how long a finished attempt may wait to be written with others;
    ``heartbeat`` is the time between two renewals of the leases held (a third of the lease
    by default; unit tests renew by hand with :meth:`renew_leases`); ``rng`` draws the retry
    jitter.
    """

    def __init__(
        self,
        store: Store,
        settings: ServiceSettings,
        *,
        metrics: ServiceMetrics | None = None,
        session: aiohttp.ClientSession | None = None,
        sender: Sender | None = None,
        clock: Clock = time.time,
        idle_poll: float = 1.0,
        flush_interval: float = 0.002,
        heartbeat: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._min_lease_left = settings.lease / 2
        self.heartbeat = settings.lease / 3 if heartbeat is None else heartbeat
        """Seconds between two renewals of the leases held."""
        self.store = store
        self.settings = settings
        self.metrics = metrics
        if sender is None and session is not None:
            sender = AiohttpSender(settings, session=session)  # which leaves the session open
        self._sender = sender
        self._owns_sender = sender is None
        self._clock = clock
        self._idle_poll = idle_poll
        self._flush_interval = flush_interval
        self._rng = rng or random.Random()
        self.lanes = Lanes(
            per_lane=settings.max_in_flight_per_url,
            max_in_flight=settings.max_in_flight,
            claim_batch=settings.claim_batch,
        )
        self.breakers = BreakerBoard(
            BreakerPolicy(
                failure_rate=settings.breaker_failure_rate,
                min_attempts=settings.breaker_min_attempts,
                window=settings.breaker_window,
                cooldown=settings.breaker_cooldown,
                max_cooldown=max(settings.breaker_max_cooldown, settings.breaker_cooldown),
            )
        )

        self.watch = EndpointWatch(failing_after=settings.failing_after)
        """Logs each breaker change and dead delivery once; the node adds operator events."""
        self._meters: dict[str, _Meters] = {}
        self._troubled: dict[str, set[str]] = {}
        """Endpoint label -> its URLs whose breaker is not closed (the gauge is 1 while any)."""
        self._signers: dict[str, Signer] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._idle_workers: deque[asyncio.Future[None]] = deque()
        self._jobs: deque[tuple[Lane, Claim, Ticket]] = deque()
        """Attempts counted in flight by :meth:`_pump`, not yet picked up by a worker."""
        self._workers_closing = False
        self._outcomes: list[tuple[Outcome, QueueKey]] = []
        self._retry_times: list[float] = []
        self._next_due: float | None = None
        self._next_due_asked = float("-inf")
        """A heap of the retry times this node wrote, to wake the claim loop for them."""
        self._releases: list[str] = []
        self._drained = False
        """The last claim skipped no URL and found less than it asked for: no other due head
        waits in the store, so a flush whose successors were all handed over need not wake
        the claim loop (anything new wakes it: an ingest, a retry, a give-back)."""
        self.leases = Leases()
        self._settling = asyncio.Lock()
        """Held by a flush and by a renewal: the leases held are what the store says."""
        self._wakeup = asyncio.Event()
        self._flush_wanted = asyncio.Event()
        self._stopping = False
        self._final = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._claim_task: asyncio.Task[None] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._listening = contextlib.AsyncExitStack()

    # Lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> Dispatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._claim_task is not None:
            raise RuntimeError("the dispatcher is already running")
        self._loop = asyncio.get_running_loop()
        if self._sender is None:
            self._sender = H1Sender(self.settings)
        await self._listen_to_other_nodes()
        self._claim_task = asyncio.create_task(self._claim_loop(), name="dispatcher-claim")
        self._flush_task = asyncio.create_task(self._flush_loop(), name="dispatcher-flush")
        self._heartbeat_task = asyncio.create_task(
            self._heartbeat_loop(), name="dispatcher-heartbeat"
        )
        log.info(
            "dispatcher started",
            max_in_flight=self.settings.max_in_flight,
            max_in_flight_per_url=self.lanes.per_lane,
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
        self._give_back(self.lanes.give_back_waiting())
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
        if self._heartbeat_task is not None:  # renewed until every outcome was written
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        if self._owns_sender and self._sender is not None:
            await self._sender.aclose()
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

    # What the dispatcher holds -------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """POSTs under way right now."""
        return self.lanes.in_flight

    @property
    def held(self) -> int:
        """Claims held: waiting in lanes or under way."""
        return self.lanes.held

    def endpoint_states(self) -> list[tuple[str, BreakerState, int]]:
        """(url, breaker state, POSTs under way to its endpoint) for every URL this node is
        busy with or whose breaker is not closed."""
        now = self._clock()
        in_flight = self.lanes.in_flight_by_url()
        for url in self.breakers.not_closed(now):
            in_flight.setdefault(url, 0)
        return [(url, self.breakers.state(url, now), n) for url, n in sorted(in_flight.items())]

    def give_back_waiting(self, url: str) -> int:
        """Give back the claims of ``url`` waiting in its lane, unattempted (its endpoint was
        just paused): POSTs under way finish, no more start. How many went back."""
        claims = self.lanes.give_back_waiting(url)
        self._give_back(claims)
        return len(claims)

    def _meters_of(self, lane: Lane) -> _Meters | None:
        meters = self._meters.get(lane.label)  # the common case, twice per attempt
        if meters is not None or self.metrics is None:
            return meters
        metrics = self.metrics
        return _cached(self._meters, lane.label, lambda: _Meters(metrics, lane.label))

    def _signer(self, secret: str) -> Signer:
        return _cached(self._signers, secret, lambda: Signer(secret))

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
            limit = self.lanes.room
            claimed_at: float | None = None
            full = False
            self._drained = False
            if limit > 0:
                claimed_at = self._clock()
                skip = self._skip_urls(claimed_at)
                try:
                    claims = await self.store.claim(
                        limit=limit,
                        now=claimed_at,
                        lease=self.settings.lease,
                        skip_urls=skip,
                    )
                except Exception:
                    failures += 1
                    log.exception("claim failed", failures=failures)
                    await self._sleep_or_wake(_STORE_RETRY_DELAYS[min(failures, 3) - 1])
                    continue
                failures = 0
                if self._stopping:
                    self._give_back_fresh(claims)
                    break
                self._admit(claims)
                full = len(claims) >= limit
                self._drained = not full and not skip
            if full:
                await asyncio.sleep(0)  # let the POSTs start, then claim the rest
                continue
            await self._idle(claimed_at)

    def _skip_urls(self, now: float) -> set[str]:
        """URLs the next claim must leave alone: paused by a breaker, or their lane is full."""
        skip = self.breakers.blocked_urls(now)
        skip.update(self.lanes.full_urls())
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
        claims = list(claims)
        self.leases.hold(claims)
        admitted = self.lanes.admit(claims)
        if admitted.second_heads:
            log.error(
                "store handed out a second head of one queue; giving it back",
                count=admitted.second_heads,
            )
        if admitted.refused:
            self._release(claim.id for claim in admitted.refused)
        for lane in admitted.lanes:
            self._pump(lane)

    def _give_back(self, claims: Iterable[Claim]) -> None:
        """Return waiting claims, already out of their lanes, to the store unattempted."""
        self._release(claim.id for claim in claims)

    def _give_back_fresh(self, claims: Iterable[Claim]) -> None:
        """Return claims that never reached the lanes (shutdown, or an ingest cancelled
        while its commit ran): held until the give-back is written, under the lease they
        came with."""
        claims = list(claims)
        self.leases.hold(claims)
        self._give_back(claims)

    def _release(self, ids: Iterable[str]) -> None:
        before = len(self._releases)
        self._releases.extend(ids)
        if len(self._releases) > before:
            self._flush_wanted.set()

    # Hand-overs: heads leased by the commit that makes them ------------------------------
    def _offer(self, queues: Collection[QueueKey]) -> HandOver | None:
        """What a commit touching ``queues`` may lease to this dispatcher: as many heads as
        its lanes have room for (set aside until :meth:`Lanes.unpromise`), none of a URL the
        next claim would skip (a full lane, a breaker that refuses). None: nothing."""
        if self._stopping or not queues:
            return None
        now = self._clock()
        if len(queues) == 1:  # an ingest of one update, the common case: no sets
            ((url, _),) = queues
            if self._skips(url, now):
                return None
            skip: set[str] = set()
        else:
            urls = {url for url, _ in queues}
            skip = {u for u in urls if self._skips(u, now)}
            if len(skip) == len(urls):
                return None
        limit = self.lanes.promise(len(queues))
        if limit <= 0:
            return None
        return HandOver(limit=limit, now=now, lease=self.settings.lease, skip_urls=skip)

    def _skips(self, url: str, now: float) -> bool:
        """Whether the next claim leaves ``url`` alone (:meth:`_skip_urls`, for one URL)."""
        return self.lanes.full(url) or not self.breakers.allows(url, now)

    def _all_skipped(self, queues: Collection[QueueKey]) -> bool:
        """Whether a claim now would leave every URL of ``queues`` alone (a breaker that
        refuses, a full lane). Waking the claim loop for them would cost a claim that finds
        none of them: under a steady ingest to a URL whose breaker is open, a claim per
        commit. What frees such a URL wakes the loop itself (the breaker's reopen time, an
        outcome's flush), and the new deliveries are committed by then."""
        if self._stopping or not queues:
            return False
        now = self._clock()
        return all(self._skips(url, now) for url, _ in queues)

    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> None:
        """``store.enqueue`` for this node's API: the commit itself leases the new heads this
        dispatcher has room for and hands them over, so they go without waiting for a claim.
        The claim loop is woken for the rest, unless each is queued behind a delivery this
        dispatcher holds (whose outcome's commit hands it over in turn) or the claim would
        skip its URL (:meth:`_all_skipped`).

        The commit is watched by a callback (:meth:`_pass_on`), not by a task and a shield
        of its own: the caller waits on a future of its own, so its cancellation (a client
        gone, a shutdown) never cancels the commit, and what the commit leases then is
        given back rather than stranded until its lease runs out."""
        queues = {(new.url, new.order_id) for new in deliveries}
        offer = self._offer(queues)
        if offer is None:
            await self.store.enqueue(deliveries)
            if not self._all_skipped(queues):
                self.wake()
            return
        try:
            commit = asyncio.ensure_future(self.store.enqueue(deliveries, hand_over=offer))
        except BaseException:
            self.lanes.unpromise(offer.limit)
            raise
        passed: asyncio.Future[list[Claim]] = commit.get_loop().create_future()
        commit.add_done_callback(functools.partial(self._pass_on, offer, queues, passed))
        late = await passed  # admitted already, unless the dispatcher began to stop
        if late:
            await self.store.release([claim.id for claim in late])

    def _pass_on(
        self,
        offer: HandOver,
        queues: Collection[QueueKey],
        passed: asyncio.Future[list[Claim]],
        commit: asyncio.Future[list[Claim] | None],
    ) -> None:
        """The ingest's commit is done: free the room set aside, admit what it leased (or,
        if the ingest was cancelled meanwhile, give it back), tell the ingest."""
        self.lanes.unpromise(offer.limit)
        if commit.cancelled():
            if not passed.done():
                passed.cancel()
            return
        error = commit.exception()
        if error is not None:
            if not passed.done():
                passed.set_exception(error)
            return
        claims = commit.result() or []
        if passed.cancelled():  # the ingest gave up; the commit stands
            self._give_back_fresh(claims)  # whose flush wakes the claim loop
            return
        if self._stopping:  # the ingest releases them (the flush may be over)
            passed.set_result(claims)
            return
        try:
            self._admit(claims)
            if any(self.lanes.holder(key) is None for key in queues):
                self.wake()
        except Exception as exc:  # a bug: the ingest hears of it rather than waiting forever
            passed.set_exception(exc)
            return
        passed.set_result([])

    # Sending -------------------------------------------------------------------------------
    def _pump(self, lane: Lane) -> None:
        """Start the lane's waiting claims while it and the dispatcher have free slots."""
        lanes = self.lanes
        while (claim := lanes.take(lane)) is not None:
            now = self._clock()
            ticket = None
            if self.leases.until(claim) - now >= self._min_lease_left and not self._makes_way(
                lane, claim, now
            ):
                ticket = self.breakers.acquire(claim.url, now)
            if ticket is None:  # heartbeat behind, another probe is better, or the breaker waits
                lanes.give_back(lane, claim)
                self._give_back((claim,))
                continue
            lanes.start(lane)
            meters = self._meters_of(lane)
            if meters is not None:
                meters.in_flight.inc()
            self._jobs.append((lane, claim, ticket))
            if self._idle_workers:
                self._idle_workers.popleft().set_result(None)
            else:
                worker = asyncio.create_task(self._worker(), name="dispatcher-worker")
                self._workers.add(worker)
                worker.add_done_callback(self._workers.discard)

    def _makes_way(self, lane: Lane, claim: Claim, now: float) -> bool:
        """Whether ``claim``, known to fail, should let another waiting claim be the probe.

        Probes rotate over different orders' heads: a delivery that fails on its own (a body
        its receiver refuses) must not be the oldest due head at every probe and keep its
        endpoint paused for everyone. It goes back to the store, due as its schedule says.
        """
        others = lane.waiting_ids(claim.url)
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
        while (lane := self.lanes.next_starved()) is not None:
            self._pump(lane)

    async def _attempt(self, lane: Lane, claim: Claim, ticket: Ticket) -> None:
        """Send one claim, then record what happened."""
        if self.leases.is_lost(claim.id):  # lost on its way to this worker: never sent
            self._abandon(lane, claim, ticket)
            return
        try:
            attempt, retry_after = await self._post(claim)
        except asyncio.CancelledError:
            # Shutdown ran out of grace: give it back; it goes again, same webhook-id.
            self._abandon(lane, claim, ticket)
            raise
        now = self._clock()
        if self.leases.is_lost(claim.id):
            log.warning(
                "lease lost while the POST was under way: another node has the delivery and "
                "may send it again; this attempt is not written",
                delivery_id=claim.id,
                url=claim.url,
                status=attempt.status_code,
                error=attempt.error,
            )
            self._abandon(lane, claim, ticket)
            self._pump_starved()
            self._pump(lane)
            return
        if self.leases.until(claim) < now:
            log.warning(
                "POST outlived its lease (the heartbeat could not renew it): another node "
                "may have sent it too",
                delivery_id=claim.id,
                url=claim.url,
            )
        outcome = decide(
            attempt,
            round_attempts=claim.round_attempts,
            schedule=self.settings.retry_schedule,
            now=now,
            retry_after=retry_after,
            rng=self._rng,
        )
        self.lanes.finished(lane, claim)
        meters = self._meters_of(lane)
        if meters is not None:
            meters.in_flight.dec()
        self._outcomes.append((outcome, (claim.url, claim.order_id)))
        if len(self._outcomes) == 1 or len(self._outcomes) >= self.settings.claim_batch:
            self._flush_wanted.set()
        try:
            if meters is not None:
                self._count(meters, attempt, outcome)
            before = self.breakers.state(claim.url, now)
            after = self.breakers.record(ticket, claim.id, outcome.result == "delivered", now)
            if after is not before:
                self._breaker_changed(lane, claim.url, after)
        except Exception:  # bookkeeping must never strand a slot or an outcome
            log.exception("recording an attempt failed")
        # Lanes starved of a global slot go first, so one busy lane cannot keep them all.
        self._pump_starved()
        self._pump(lane)
        # No wake here: the flush of this outcome follows within flush_interval, hands over
        # the successors, and wakes the claim loop once for the whole batch if need be.

    def _abandon(self, lane: Lane, claim: Claim, ticket: Ticket) -> None:
        """Give back a claim counted in flight but not attempted to the end (or, if its lease
        was lost, just forget it: it is another node's)."""
        self.lanes.abandon(lane, claim)
        meters = self._meters_of(lane)
        if meters is not None:
            meters.in_flight.dec()
        self.breakers.abandon(ticket)
        if not self.leases.take_lost(claim.id):
            self._give_back((claim,))

    def _count(self, meters: _Meters, attempt: Attempt, outcome: Outcome) -> None:
        assert self.metrics is not None
        self.metrics.attempt_latency.observe(attempt.latency_ms / 1000)
        if outcome.result == "delivered":
            meters.delivered.inc()
            return
        meters.failed.inc()
        if outcome.result == "dead":
            meters.dead.inc()

    def _breaker_changed(self, lane: Lane, url: str, state: BreakerState) -> None:
        """Open: give back the URL's waiting claims. Any change: tell the watch (which logs
        an outage once, however often its probes fail) and update the gauge."""
        if state is BreakerState.OPEN:
            self._give_back(self.lanes.give_back_waiting(url))
        now = self._clock()
        self.watch.breaker_changed(url, state, now)
        troubled = self._troubled.setdefault(lane.label, set())
        if state is BreakerState.CLOSED:
            troubled.discard(url)
        else:
            troubled.add(url)
        if not troubled:
            del self._troubled[lane.label]
        if self.metrics is not None:  # only this endpoint's gauge can have changed
            self.metrics.breaker_open.labels(lane.label).set(1 if troubled else 0)

    async def _post(self, claim: Claim) -> tuple[Attempt, float | None]:
        """One POST: the stored bytes, signed. Never raises except on cancellation."""
        sender = self._sender
        assert sender is not None, "the dispatcher is not started"
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
            answer = await sender.send(Request(claim.url, claim.payload, headers))
            status, body, retry_after = answer.status, answer.body, answer.retry_after
        except SendError as exc:
            status, error = exc.status, str(exc)
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
            async with self._settling:
                flushed = await self._flush_once()
            if flushed:
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
        claim_more = False
        if outcomes:
            # Let go of each queue *before* its outcome commits: the commit makes the queue's
            # next head claimable, and its wake-up (PostgreSQL's NOTIFY reaches this node too)
            # can run a claim that returns that head before ``finish`` has returned here.
            let_go = self.lanes.let_go((key, outcome.delivery_id) for outcome, key in outcomes)
            leases = self.leases.let_go(outcome.delivery_id for outcome, _ in outcomes)
            held = Held(dict(leases))
            moved_on = {key for outcome, key in outcomes if outcome.result != "retry"}
            offer = self._offer(moved_on)
            try:
                handed = await self.store.finish(
                    [outcome for outcome, _ in outcomes], hand_over=offer, held=held
                )
            except Exception:
                log.exception("finish failed", outcomes=len(outcomes))
                self._outcomes[:0] = outcomes
                self.lanes.hold_again(let_go)  # not committed: the heads are still ours
                self.leases.hold_again(leases)
                return False
            finally:
                if offer is not None:
                    self.lanes.unpromise(offer.limit)
            # The successors go at once; the claim loop is woken only if something may be
            # left for it: a successor not offered, a retry to wait for, other work.
            lost = set(held.lost)
            if lost:
                self._lost_when_written(lost, "finish")
            if self._stopping:  # close() gave back what waits already: these go back too
                self._give_back_fresh(handed or ())
            else:
                self._admit(handed or ())
            if offer is None or offer.limit < len(moved_on) or offer.skip_urls:
                claim_more = bool(moved_on)
            for outcome, (url, order_id) in outcomes:
                if lost and outcome.delivery_id in lost:
                    continue  # its new holder schedules it
                if outcome.next_attempt_at is not None and len(self._retry_times) < _RETRY_MEMORY:
                    heapq.heappush(self._retry_times, outcome.next_attempt_at)
                    claim_more = True
                elif outcome.result == "dead":
                    self.watch.delivery_dead(outcome.attempt, url, order_id)
        releases, self._releases = self._releases, []
        if releases:
            leases = self.leases.let_go(releases)
            held = Held(dict(leases))
            try:
                await self.store.release(releases, held=held)
            except Exception:
                log.exception("release failed", deliveries=len(releases))
                self._releases[:0] = releases
                self.leases.hold_again(leases)
                return False
            if held.lost:
                self._lost_when_written(set(held.lost), "release")
        if releases or (outcomes and (claim_more or not self._drained)):
            self._wakeup.set()
        return True

    # The heartbeat ------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.renew_leases()
            except Exception:  # the store is away: the next beat tries again
                log.exception("renewing leases failed", leases=len(self.leases))

    async def renew_leases(self) -> int:
        """One heartbeat: renew every lease held for ``settings.lease`` from now, and drop
        what the store says was lost (see the module docstring). How many were renewed.

        It runs between two flushes, never during one: the leases held are then exactly
        those the store has not yet seen an outcome or a give-back for.
        """
        async with self._settling:
            held = self.leases.held()
            if not held:
                return 0
            until = self._clock() + self.settings.lease
            renewed = await self.store.renew(held, until=until)
            lost = self.leases.renewed(held, set(renewed), until)
            if lost:
                self._drop_lost(lost)
            return len(renewed)

    def _lost_when_written(self, lost: set[str], found_at: str) -> None:
        """The store did not apply these outcomes or give-backs: their leases were another
        node's by then (this node stalled for longer than a lease, so no renewal told it).
        Nothing is left of them here; the new holder sends and finishes them."""
        self._count_lost(len(lost), found_at)
        log.warning(
            "leases lost to another node before their outcomes were written: attempts logged, "
            "deliveries left to their new holder (which may send them again)"
            if found_at == "finish"
            else "leases lost to another node before their give-back was written: left to it",
            count=len(lost),
            delivery_ids=sorted(lost)[:_LOST_IDS_LOGGED],
        )

    def _count_lost(self, count: int, found_at: str) -> None:
        if self.metrics is not None:
            self.metrics.leases_lost.labels(found_at).inc(count)

    def _drop_lost(self, lost: set[str]) -> None:
        """Let go of deliveries whose leases are another node's now, wherever they are."""
        self._count_lost(len(lost), "renewal")
        waiting = self.lanes.forget_waiting(lost)
        written = [(o, key) for o, key in self._outcomes if o.delivery_id in lost]
        if written:
            self._outcomes = [(o, key) for o, key in self._outcomes if o.delivery_id not in lost]
            self.lanes.let_go((key, outcome.delivery_id) for outcome, key in written)
            for outcome, (url, _) in written:
                log.warning(
                    "lease lost before the outcome was written: another node has the "
                    "delivery and may send it again; this attempt is not written",
                    delivery_id=outcome.delivery_id,
                    url=url,
                    status=outcome.attempt.status_code,
                    error=outcome.attempt.error,
                )
        given_back = [delivery_id for delivery_id in self._releases if delivery_id in lost]
        if given_back:
            self._releases = [
                delivery_id for delivery_id in self._releases if delivery_id not in lost
            ]
        dropped = {claim.id for claim in waiting}
        dropped.update(outcome.delivery_id for outcome, _ in written)
        dropped.update(given_back)
        self.leases.lose(lost - dropped)  # started: their workers drop them
        log.warning(
            "leases lost to another node",
            count=len(lost),
            waiting=len(waiting),
            under_way=len(lost - dropped),
        )
        if waiting:
            self._wakeup.set()  # their lanes have room again


def _cached(cache: dict[K, V], key: K, make: Callable[[], V]) -> V:
    """``cache[key]``, made by ``make()`` if missing; a full cache lets its oldest entry go
    (not all of them: with more endpoints than it holds, each would be made again)."""
    value = cache.get(key)
    if value is None:
        if len(cache) >= _CACHE_LIMIT:
            del cache[next(iter(cache))]
        value = cache[key] = make()
    return value
