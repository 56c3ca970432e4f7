"""The dispatcher's rules with a scripted sender: no server, no socket, no waiting on time.

Each test holds POSTs under way for as long as it needs (an event per request) and looks at
what the dispatcher sends next. The same rules are tested over real HTTP in
``tests/integration/test_dispatcher*.py``; here the point is the rule, not the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from dhan_postback.errors import Conflict
from dhan_postback.service.breaker import BreakerState
from dhan_postback.service.dispatcher import Dispatcher
from dhan_postback.service.metrics import ServiceMetrics, endpoint_label
from dhan_postback.service.sender import Answer, MockSender, Request, SendError
from dhan_postback.service.store.base import Claim, DeliveryStatus, NewDelivery, Store
from dhan_postback.service.store.memory import MemoryStore
from tests.helpers.dispatching import FifoBreakingStore, FrozenClock, Gate, fast_settings, settled
from tests.helpers.outbox import Outbox
from tests.helpers.updates import order_updates
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.timeout(60)

BUSY = "http://127.0.0.1:8001/hook"
OTHER = "http://127.0.0.1:8002/hook"


async def test_a_lane_runs_at_most_max_in_flight_per_url_posts() -> None:
    store, gate = MemoryStore(), Gate()
    outbox = await Outbox(store).open(BUSY)
    await outbox.add(BUSY, order_updates(20, 1))
    sender = MockSender(gate)
    settings = fast_settings(max_in_flight_per_url=3, claim_batch=4, shutdown_grace=0)
    async with Dispatcher(store, settings, sender=sender) as dispatcher:
        await eventually(lambda: dispatcher.held >= 2 * 3)  # the lane is full
        sent = len(sender.requests)

    assert sent == 3


async def test_a_freed_global_slot_goes_to_a_starved_lane_before_the_busy_one() -> None:
    store, gate = MemoryStore(), Gate()
    busy = await Outbox(store).open(BUSY)
    await busy.add(BUSY, order_updates(20, 1))
    settings = fast_settings(max_in_flight=2, max_in_flight_per_url=2, shutdown_grace=0)
    async with Dispatcher(store, settings, sender=MockSender(gate)) as dispatcher:
        await eventually(lambda: len(gate.waiting) == 2)
        other = await Outbox(store).open(OTHER)
        await other.add(OTHER, order_updates(1, 1))
        dispatcher.wake()
        await eventually(lambda: dispatcher.held == 20 + 1)  # every claim, one of them OTHER's
        gate.answer()
        await eventually(lambda: len(gate.waiting) == 2)
        started_next = gate.waiting[-1][0].url

    assert started_next == OTHER


async def test_two_updates_of_one_order_are_never_under_way_together() -> None:
    store = FifoBreakingStore()  # hands out every due delivery, heads or not
    under_way: Counter[str] = Counter()
    overlaps: list[str] = []
    order_of: dict[str, str] = {}

    async def handler(request: Request) -> Answer:
        order = order_of[request.headers["webhook-id"]]
        under_way[order] += 1
        if under_way[order] > 1:
            overlaps.append(order)
        await asyncio.sleep(0)  # let the others start, were they allowed to
        under_way[order] -= 1
        return Answer(200)

    outbox = await Outbox(store).open(BUSY)
    added = await outbox.add(BUSY, order_updates(2, 4))
    order_of.update((d.id, d.order_id) for d in added)
    sender = MockSender(handler)
    async with Dispatcher(store, fast_settings(), sender=sender):
        await settled(store, len(added))

    assert overlaps == []
    for order_id in {d.order_id for d in added}:
        submitted = [d.id for d in added if d.order_id == order_id]
        sent = [r.headers["webhook-id"] for r in sender.requests]
        assert [i for i in sent if i in submitted] == submitted


async def test_a_failure_without_an_answer_is_recorded_with_its_reason() -> None:
    store = MemoryStore()

    def refuse(request: Request) -> Answer:
        raise SendError("ClientConnectorError: connection refused")

    outbox = await Outbox(store).open(BUSY)
    (delivery,) = await outbox.add(BUSY, order_updates(1, 1))
    async with Dispatcher(store, fast_settings(retry_schedule="0s"), sender=MockSender(refuse)):
        counts = await settled(store, 1)
    attempts = await store.get_attempts(delivery.id)

    assert counts[DeliveryStatus.DEAD] == 1
    assert [(a.status_code, a.error) for a in attempts] == [
        (None, "ClientConnectorError: connection refused")
    ]


async def test_retry_after_of_a_429_sets_the_next_attempt() -> None:
    store = MemoryStore()
    outbox = await Outbox(store).open(BUSY)
    (delivery,) = await outbox.add(BUSY, order_updates(1, 1))
    sender = MockSender(lambda request: Answer(429, retry_after="120"))
    sent_after = time.time()
    async with Dispatcher(store, fast_settings(retry_after_cap=600), sender=sender):
        await eventually(lambda: len(sender.requests) == 1)
    state = await store.get_delivery(delivery.id)

    assert state is not None and state.next_attempt_at is not None
    assert (state.attempts, state.last_status_code) == (1, 429)
    assert state.next_attempt_at >= sent_after + 119


async def test_a_given_sender_is_not_closed_by_the_dispatcher() -> None:
    sender = MockSender(lambda request: Answer(200))
    async with Dispatcher(MemoryStore(), fast_settings(), sender=sender):
        pass

    assert not sender.closed


async def claimed_by_another_node(store: MemoryStore, now: float) -> list[Claim]:
    """What another node's claim gets at ``now``, once anything is claimable."""
    while not (claims := await store.claim(limit=100, now=now, lease=5)):
        await asyncio.sleep(0.01)
    return claims


POISON_CLIENT = "1000000666"


def poisoned(request: Request) -> Answer:
    """500 for the poisoned client's orders, 200 for every other."""
    return Answer(500) if POISON_CLIENT.encode() in request.body else Answer(200)


async def test_an_opened_breaker_gives_back_the_waiting_claims_of_its_url() -> None:
    store = MemoryStore()
    outbox = await Outbox(store).open(BUSY)
    await outbox.add(BUSY, order_updates(6, 1))
    clock = FrozenClock()
    sender = MockSender(lambda request: Answer(500))
    settings = fast_settings(max_in_flight_per_url=1, breaker_min_attempts=2, breaker_cooldown=30)
    async with Dispatcher(store, settings, sender=sender, clock=clock) as dispatcher:
        await eventually(lambda: bool(dispatcher.breakers.blocked_urls(clock())))
        held = dispatcher.held
        other_node = await claimed_by_another_node(store, clock())

    assert held == 0
    assert len(sender.requests) == 2  # the breaker opened on the second failure
    assert len(other_node) == 4  # the rest went back at once, not after their lease


async def test_an_endpoints_breaker_gauge_stays_up_while_any_of_its_urls_is_not_closed() -> None:
    first, second = BUSY, BUSY.replace("/hook", "/other")  # one endpoint, two URLs
    store, metrics = MemoryStore(), ServiceMetrics()
    outbox = await Outbox(store).open(first)
    await outbox.add(first, order_updates(2, 1))
    await outbox.add(second, order_updates(2, 1))
    clock = FrozenClock()
    failing = {first, second}
    sender = MockSender(lambda request: Answer(500 if request.url in failing else 200))
    settings = fast_settings(
        retry_schedule="0s" + ",1s" * 10, breaker_min_attempts=2, breaker_cooldown=30, lease=60
    )
    label = {"endpoint": endpoint_label(BUSY)}

    def gauge() -> float | None:
        return metrics.registry.get_sample_value("dhan_postback_breaker_open", label)

    def state(url: str) -> BreakerState:
        return dispatcher.breakers.state(url, clock())

    async with Dispatcher(
        store, settings, sender=sender, clock=clock, metrics=metrics
    ) as dispatcher:
        await eventually(lambda: dispatcher.breakers.blocked_urls(clock()) == failing)
        both_open = gauge()
        failing.discard(second)
        clock.now += 31  # both probe: the second closes, the first opens again
        dispatcher.wake()
        await eventually(lambda: state(second) is BreakerState.CLOSED)
        await eventually(lambda: state(first) is BreakerState.OPEN)
        one_open = gauge()
        failing.clear()
        clock.now += 61
        dispatcher.wake()
        await eventually(lambda: state(first) is BreakerState.CLOSED)
        none_open = gauge()

    assert (both_open, one_open, none_open) == (1, 1, 0)


async def test_the_probe_goes_to_a_delivery_not_known_to_fail() -> None:
    store = MemoryStore()
    poison = await Outbox(store, client_id=POISON_CLIENT).open(BUSY)
    await poison.add(BUSY, order_updates(2, 1, client_id=POISON_CLIENT))
    clock = FrozenClock()
    healthy = await Outbox(store).open(BUSY)
    sender = MockSender(poisoned)
    settings = fast_settings(
        max_in_flight_per_url=1, breaker_min_attempts=2, breaker_cooldown=30, lease=60
    )
    async with Dispatcher(store, settings, sender=sender, clock=clock) as dispatcher:
        await eventually(lambda: bool(dispatcher.breakers.blocked_urls(clock())))
        opened_after = len(sender.requests)
        await healthy.add(BUSY, order_updates(3, 1)[2:])  # not the poisoned orders
        clock.now += 31  # the cooldown is over, and the poison's retries are due
        dispatcher.wake()
        await eventually(lambda: len(sender.requests) > opened_after)
        probe = sender.requests[opened_after]

    assert opened_after == 2
    assert POISON_CLIENT.encode() not in probe.body


# Hand-overs: heads leased by the commit that makes them ----------------------------------------


class CountingStore(MemoryStore):
    """Remembers what its claims handed out, and what its enqueues handed over."""

    def __init__(self) -> None:
        super().__init__()
        self.claimed: list[str] = []
        self.handed: list[str] = []

    async def claim(self, **kwargs: Any) -> list[Claim]:
        claims = await super().claim(**kwargs)
        self.claimed += [claim.id for claim in claims]
        return claims

    async def enqueue(self, deliveries: Sequence[NewDelivery], **kwargs: Any) -> list[Claim] | None:
        handed = await super().enqueue(deliveries, **kwargs)
        self.handed += [claim.id for claim in handed or ()]
        return handed


class Ingest:
    """The store as the API writes to it on a node with a dispatcher: through
    :meth:`Dispatcher.enqueue` (an :class:`Outbox` over it commits as the API does)."""

    def __init__(self, store: Store, dispatcher: Dispatcher) -> None:
        self._store = store
        self._dispatcher = dispatcher

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> None:
        await self._dispatcher.enqueue(deliveries)


@contextlib.asynccontextmanager
async def breaker_open_at_busy(
    store: Store, clock: FrozenClock
) -> AsyncIterator[tuple[Dispatcher, Outbox]]:
    """A dispatcher whose breaker for BUSY opened on two failed POSTs (every POST fails), and
    an outbox that ingests through it as the API does."""
    sender = MockSender(lambda request: Answer(500))
    settings = fast_settings(max_in_flight_per_url=1, breaker_min_attempts=2, breaker_cooldown=30)
    async with Dispatcher(store, settings, sender=sender, clock=clock) as dispatcher:
        outbox = await Outbox(Ingest(store, dispatcher)).open(BUSY)  # type: ignore[arg-type]
        await outbox.add(BUSY, order_updates(2, 1))  # not due yet by the frozen clock
        clock.now = time.time()
        dispatcher.wake()
        await eventually(lambda: bool(dispatcher.breakers.blocked_urls(clock())))
        yield dispatcher, outbox


async def test_an_ingest_to_an_open_breakers_url_does_not_wake_the_claim_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, clock = CountingStore(), FrozenClock()
    async with breaker_open_at_busy(store, clock) as (dispatcher, outbox):
        woken: list[None] = []
        monkeypatch.setattr(dispatcher, "wake", lambda: woken.append(None))
        await outbox.add(BUSY, order_updates(3, 1)[2:])

    assert woken == []


async def test_an_update_ingested_while_its_urls_breaker_is_open_goes_once_it_closes() -> None:
    store = CountingStore()
    answers = iter([Answer(500), Answer(500)])
    sender = MockSender(lambda request: next(answers, Answer(200)))
    settings = fast_settings(max_in_flight_per_url=1, breaker_min_attempts=2, breaker_cooldown=0.5)
    async with Dispatcher(store, settings, sender=sender) as dispatcher:
        outbox = await Outbox(Ingest(store, dispatcher)).open(BUSY)  # type: ignore[arg-type]
        await outbox.add(BUSY, order_updates(2, 1))
        await eventually(lambda: bool(dispatcher.breakers.blocked_urls(time.time())))
        [late] = await outbox.add(BUSY, order_updates(3, 1)[2:])
        await settled(store, 3)
        delivered = await store.get_delivery(late.id)

    assert delivered is not None
    assert delivered.status is DeliveryStatus.DELIVERED


async def test_an_orders_later_updates_go_without_a_claim() -> None:
    store = CountingStore()
    added = await (await Outbox(store).open(BUSY)).add(BUSY, order_updates(1, 5))
    sender = MockSender(lambda request: Answer(200))
    async with Dispatcher(store, fast_settings(), sender=sender):
        await settled(store, len(added))

    assert store.claimed == [added[0].id]  # the others: handed over by their predecessor's finish
    assert [r.headers["webhook-id"] for r in sender.requests] == [d.id for d in added]


async def test_ingested_updates_go_without_a_claim() -> None:
    store = CountingStore()
    sender = MockSender(lambda request: Answer(200))
    async with Dispatcher(store, fast_settings(), sender=sender) as dispatcher:
        outbox = await Outbox(Ingest(store, dispatcher)).open(BUSY)  # type: ignore[arg-type]
        added = await outbox.add(BUSY, order_updates(3, 2))
        await settled(store, len(added))

    assert store.claimed == []
    for order_id in {d.order_id for d in added}:
        submitted = [d.id for d in added if d.order_id == order_id]
        sent = [r.headers["webhook-id"] for r in sender.requests]
        assert [i for i in sent if i in submitted] == submitted


async def test_a_full_lanes_url_is_not_handed_over_and_stays_claimable() -> None:
    store, gate = MemoryStore(), Gate()
    settings = fast_settings(max_in_flight_per_url=1, claim_batch=4, shutdown_grace=0)
    async with Dispatcher(store, settings, sender=MockSender(gate)) as dispatcher:
        outbox = await Outbox(Ingest(store, dispatcher)).open(BUSY)  # type: ignore[arg-type]
        await outbox.add(BUSY, order_updates(3, 1))  # handed over: the lane was not full
        held = dispatcher.held
        [late] = await outbox.add(BUSY, order_updates(4, 1)[3:])
        other_node = await store.claim(limit=10, now=time.time(), lease=5)
        still_held = dispatcher.held

    assert (held, still_held) == (3, 3)  # full at 2 * max_in_flight_per_url
    assert [claim.id for claim in other_node] == [late.id]


async def test_the_room_set_aside_for_a_commit_that_fails_is_free_again() -> None:
    store, gate = MemoryStore(), Gate()
    settings = fast_settings(  # room below a claim batch: every promise shows in it
        max_in_flight=1, max_in_flight_per_url=1, claim_batch=4, shutdown_grace=0
    )
    async with Dispatcher(store, settings, sender=MockSender(gate)) as dispatcher:
        outbox = await Outbox(Ingest(store, dispatcher)).open(BUSY)  # type: ignore[arg-type]
        added = await outbox.add(BUSY, order_updates(1, 1))
        room = dispatcher.lanes.room
        with pytest.raises(Conflict):
            await dispatcher.enqueue(added)  # already stored
        room_after = dispatcher.lanes.room

    assert room_after == room == 4  # max_in_flight + claim_batch, less the one held


class SlowCommitStore(CountingStore):
    """Commits an enqueue only once the test opens ``commit`` (``committing`` tells that
    one has begun)."""

    def __init__(self) -> None:
        super().__init__()
        self.committing = asyncio.Event()
        self.commit = asyncio.Event()

    async def enqueue(self, deliveries: Sequence[NewDelivery], **kwargs: Any) -> list[Claim] | None:
        self.committing.set()
        await self.commit.wait()
        return await super().enqueue(deliveries, **kwargs)


async def test_an_ingest_cancelled_during_its_commit_gives_back_what_the_commit_leased() -> None:
    store = SlowCommitStore()
    sender = MockSender(lambda request: Answer(200))
    settings = fast_settings(lease=600)  # a stranded lease would outlast the test
    async with Dispatcher(store, settings, sender=sender) as dispatcher:
        outbox = await Outbox(Ingest(store, dispatcher)).open(BUSY)  # type: ignore[arg-type]
        ingest = asyncio.create_task(outbox.add(BUSY, order_updates(1, 1)))
        await store.committing.wait()
        ingest.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ingest
        store.commit.set()  # the commit goes on, and leases the new head to the dispatcher
        counts = await settled(store, 1)

    assert len(store.handed) == 1
    assert counts[DeliveryStatus.DELIVERED] == 1
    assert [r.headers["webhook-id"] for r in sender.requests] == store.handed


async def test_an_open_breakers_url_is_not_handed_over() -> None:
    store, clock = CountingStore(), FrozenClock()
    async with breaker_open_at_busy(store, clock) as (_, outbox):
        clock.now = time.time() + 1  # what comes next is due, the breaker still open
        [late] = await outbox.add(BUSY, order_updates(3, 1)[2:])
        other_node = await claimed_by_another_node(store, clock())

    assert late.id not in store.handed
    assert late.id in [claim.id for claim in other_node]
