"""One bad endpoint, a stopping node, a crashed node: what the dispatcher does about each."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
import structlog

from dhan_postback.service.breaker import BreakerState
from dhan_postback.service.dispatcher import Dispatcher
from dhan_postback.service.metrics import ServiceMetrics, endpoint_label
from dhan_postback.service.store.base import Claim, DeliveryQuery, DeliveryStatus, Outcome, Store
from dhan_postback.service.store.memory import MemoryStore
from dhan_postback.settings import ServiceSettings
from tests.helpers.dispatching import FifoBreakingStore, fast_settings, settled
from tests.helpers.outbox import Outbox
from tests.helpers.receivers import Received, RecordingReceiver, Reply
from tests.helpers.servers import BlackHole, MultiPortServer, UvicornThread
from tests.helpers.updates import order_updates
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.timeout(60)


async def test_the_breaker_pauses_a_failing_url_probes_it_and_closes(store: Store) -> None:
    metrics = ServiceMetrics()
    gauge_while_open: list[float | None] = []
    label = {}

    def plan(request: Received) -> Reply:
        if request.index == 3:  # the first probe: the breaker is open
            gauge = metrics.registry.get_sample_value("dhan_postback_breaker_open", label)
            gauge_while_open.append(gauge)
        return Reply(500) if request.index < 4 else Reply()

    receiver = RecordingReceiver(plan)
    with UvicornThread(receiver.app) as server:
        label["endpoint"] = endpoint_label(server.url)
        outbox = await Outbox(store).open(server.url)
        await outbox.add(server.url + "/hook", order_updates(5, 1))
        settings = fast_settings(
            retry_schedule="0s" + ",10ms" * 10,
            breaker_min_attempts=3,
            breaker_cooldown=0.3,
            max_in_flight_per_url=1,
        )
        async with Dispatcher(store, settings, metrics=metrics):
            counts = await settled(store, 5)

    assert counts[DeliveryStatus.DELIVERED] == 5
    times = [r.arrived for r in receiver.snapshot()]
    assert len(times) == 5 + 4  # 3 failures to open, 1 failed probe, then all succeed
    assert times[3] - times[2] >= 0.25  # paused for the cooldown, then one probe
    assert times[4] - times[3] >= 0.25  # the probe failed: paused again
    assert gauge_while_open == [1.0]
    assert metrics.registry.get_sample_value("dhan_postback_breaker_open", label) == 0


async def test_probes_rotate_away_from_deliveries_that_keep_failing(store: Store) -> None:
    poison = order_updates(2, 1, client_id="1000000666")
    receiver = RecordingReceiver(lambda r: Reply(500) if b"1000000666" in r.body else Reply())
    with UvicornThread(receiver.app) as server:
        url = server.url + "/hook"
        poisoner = await Outbox(store, client_id="1000000666").open(url)
        healthy = await Outbox(store).open(url)
        await poisoner.add(url, poison)
        settings = fast_settings(
            retry_schedule="0s" + ",10ms" * 200,  # the poison is always the oldest due head
            breaker_min_attempts=2,
            breaker_cooldown=0.3,
            max_in_flight_per_url=1,
        )
        async with Dispatcher(store, settings) as dispatcher:
            await eventually(lambda: bool(dispatcher.breakers.blocked_urls(time.time())))
            opened_after = len(receiver.snapshot())
            await healthy.add(url, order_updates(7, 1)[2:])  # not the poisoned orders
            dispatcher.wake()
            await eventually(lambda: len(receiver.accepted()) == 5)
            poisoned_so_far = len(receiver.snapshot()) - 5
            await eventually(lambda: len(receiver.snapshot()) - 5 >= poisoned_so_far + 10)
            state = dispatcher.breakers.state(url, time.time())

    probe = receiver.snapshot()[opened_after]
    assert b"1000000666" not in probe.body  # the first probe went to a healthy order
    assert state is BreakerState.CLOSED  # and the poison failing on keeps it closed


async def test_an_open_breaker_leaves_other_urls_flowing(store: Store) -> None:
    failing = RecordingReceiver(lambda r: Reply(500))
    healthy = RecordingReceiver()
    with UvicornThread(failing.app) as bad, UvicornThread(healthy.app) as good:
        bad_box = await Outbox(store).open(bad.url)
        good_box = await Outbox(store).open(good.url)
        await bad_box.add(bad.url + "/hook", order_updates(20, 1))
        settings = fast_settings(
            retry_schedule="0s" + ",10ms" * 20,
            breaker_min_attempts=2,
            breaker_cooldown=30,
            max_in_flight_per_url=1,  # nothing of the bad URL is under way when it opens
        )
        async with Dispatcher(store, settings) as dispatcher:
            await eventually(lambda: bool(dispatcher.breakers.blocked_urls(time.time())))
            sent_while_open = len(failing.snapshot())
            await good_box.add(good.url + "/hook", order_updates(20, 1))
            dispatcher.wake()
            await eventually(lambda: len(healthy.snapshot()) == 20)
            assert len(failing.snapshot()) == sent_while_open


async def test_a_black_holed_endpoint_does_not_slow_the_healthy_ones() -> None:
    per_endpoint = order_updates(60, 2)
    receiver = RecordingReceiver()
    with MultiPortServer(receiver.app, 10) as servers, BlackHole() as hole:
        all_healthy = await _time_to_deliver(servers.urls, servers.urls, per_endpoint)
        one_black_hole = await _time_to_deliver(
            [*servers.urls[:9], hole.url], servers.urls[:9], per_endpoint
        )
    print(f"all healthy {all_healthy:.3f}s, one black hole {one_black_hole:.3f}s")
    assert one_black_hole <= 3 * max(all_healthy, 0.2), (one_black_hole, all_healthy)


async def _time_to_deliver(urls: list[str], healthy: list[str], bodies: list[bytes]) -> float:
    """Seconds until every delivery to the ``healthy`` URLs is delivered."""
    store = MemoryStore()
    wanted: set[str] = set()
    for url in urls:
        outbox = await Outbox(store).open(url)
        batch = await outbox.add(url + "/hook", bodies)
        if url in healthy:
            wanted.update(d.id for d in batch)
    # The receivers share this process (and, on a loaded machine, a sliver of a core): with
    # 128 POSTs in flight, a healthy answer queues there for up to a second (p99 0.9 s with a
    # quarter of a core), longer than fast_settings' 0.5 s timeout. A timed-out POST is still
    # served, then retried, so the timeouts fed themselves (2,825 of them, 351 healthy
    # deliveries dead) though no receiver was slow. So this test keeps the service's own
    # timeout and lease: the black hole holds its lane's POSTs 5 s each, as a real one would.
    # The schedule still lets a POST lost some other way be retried.
    defaults = ServiceSettings()
    settings = fast_settings(
        shutdown_grace=0,
        timeout=defaults.timeout,
        lease=defaults.lease,
        retry_schedule="0s,50ms,100ms,200ms,400ms,800ms",
    )
    started = time.monotonic()
    async with Dispatcher(store, settings):
        while True:
            counts = await store.counts()  # cheap: polling each delivery would load the loop
            if counts[DeliveryStatus.DEAD]:
                dead = await store.list_deliveries(DeliveryQuery(status=DeliveryStatus.DEAD))
                assert not [d.id for d in dead if d.id in wanted], "healthy deliveries died"
            if counts[DeliveryStatus.DELIVERED] == len(wanted):
                return time.monotonic() - started
            await asyncio.sleep(0.02)


async def test_a_black_hole_holds_a_bounded_number_of_claims(store: Store) -> None:
    with BlackHole() as hole:
        outbox = await Outbox(store).open(hole.url)
        await outbox.add(hole.url + "/hook", order_updates(200, 1))
        settings = fast_settings(max_in_flight_per_url=4, claim_batch=8, shutdown_grace=0)
        async with Dispatcher(store, settings) as dispatcher:
            await eventually(lambda: dispatcher.in_flight == 4)
            await asyncio.sleep(0.1)
            assert dispatcher.held <= 2 * 4 + 8
            other_node = await store.claim(limit=500, now=time.time(), lease=5)
            assert len(other_node) >= 200 - (2 * 4 + 8)


async def test_graceful_shutdown_finishes_posts_under_way_and_gives_back_the_rest(
    store: Store,
) -> None:
    receiver = RecordingReceiver(lambda r: Reply(delay=0.3))
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        await outbox.add(server.url + "/hook", order_updates(20, 1))
        async with Dispatcher(store, fast_settings(max_in_flight_per_url=2)):
            await eventually(lambda: len(receiver.snapshot()) == 2)
        counts = await store.counts()
        other_node = await store.claim(limit=100, now=time.time(), lease=5)

    assert counts[DeliveryStatus.DELIVERED] == 2
    assert len(other_node) == 18


async def test_shutdown_gives_back_posts_that_outlast_the_grace(store: Store) -> None:
    receiver = RecordingReceiver(lambda r: Reply(delay=1.5))
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        await outbox.add(server.url + "/hook", order_updates(20, 1))
        settings = fast_settings(max_in_flight_per_url=2, timeout=3, shutdown_grace=0.1)
        async with Dispatcher(store, settings):
            await eventually(lambda: len(receiver.snapshot()) == 2)
        other_node = await store.claim(limit=100, now=time.time(), lease=5)
        attempts = [await store.get_attempts(d.id) for d in outbox.deliveries]

    assert len(other_node) == 20
    assert all(a == [] for a in attempts)


async def test_claims_of_a_crashed_node_are_sent_after_their_lease_with_the_same_ids(
    store: Store,
) -> None:
    receiver = RecordingReceiver()
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        await outbox.add(server.url + "/hook", order_updates(10, 1))
        crashed_at = time.time()
        # A node claimed everything and died (kill -9): no finish, no release.
        taken = await store.claim(limit=100, now=crashed_at, lease=1.0)
        async with Dispatcher(store, fast_settings(), idle_poll=30):
            counts = await settled(store, 10)

    assert len(taken) == 10
    assert counts[DeliveryStatus.DELIVERED] == 10
    assert sorted(r.webhook_id for r in receiver.snapshot()) == sorted(c.id for c in taken)


async def test_two_updates_of_one_order_are_never_in_flight_together() -> None:
    receiver = RecordingReceiver(lambda r: Reply(delay=0.1))
    with UvicornThread(receiver.app) as server:
        store = FifoBreakingStore()
        outbox = await Outbox(store).open(server.url)
        await outbox.add(server.url + "/hook", order_updates(2, 4))
        async with Dispatcher(store, fast_settings()):
            await settled(store, 8)

    arrivals: dict[str, list[Received]] = defaultdict(list)
    order_of = {d.id: d.order_id for d in outbox.deliveries}
    for request in receiver.snapshot():
        arrivals[order_of[request.webhook_id]].append(request)
    for order_id, requests in arrivals.items():
        submitted = [d.id for d in outbox.deliveries if d.order_id == order_id]
        assert [r.webhook_id for r in requests] == submitted
        gaps = [b.arrived - a.arrived for a, b in itertools.pairwise(requests)]
        assert min(gaps) >= 0.1  # each waited for the previous answer


async def test_a_busy_endpoint_cannot_keep_every_global_slot(store: Store) -> None:
    slow = RecordingReceiver(lambda r: Reply(delay=0.2))
    fast = RecordingReceiver()
    with UvicornThread(slow.app) as busy, UvicornThread(fast.app) as other:
        busy_box = await Outbox(store).open(busy.url)
        other_box = await Outbox(store).open(other.url)
        await busy_box.add(busy.url + "/hook", order_updates(60, 1))
        settings = fast_settings(max_in_flight=4, max_in_flight_per_url=4, claim_batch=64)
        async with Dispatcher(store, settings) as dispatcher:
            await eventually(lambda: dispatcher.in_flight == 4)
            await other_box.add(other.url + "/hook", order_updates(5, 1))
            dispatcher.wake()
            await eventually(lambda: len(fast.snapshot()) == 5, timeout=20)
            busy_sent = len(slow.snapshot())

    assert busy_sent < 60 / 2  # the other endpoint did not wait for the busy one's backlog


class _NotifyingStore(MemoryStore):
    """A store that wakes its listeners on every commit of outcomes, and lets the woken claim
    run before ``finish`` returns, as PostgreSQL's NOTIFY can reach a node before the answer
    to its own COMMIT does."""

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list[Callable[[], None]] = []
        self._claimed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def listen_wakeups(self, wake: Callable[[], None]) -> AsyncIterator[None]:
        self._listeners.append(wake)
        yield

    async def claim(self, **kwargs: Any) -> list[Claim]:
        claims = await super().claim(**kwargs)
        self._claimed.set()
        return claims

    async def finish(self, outcomes: Sequence[Outcome]) -> None:
        await super().finish(outcomes)
        self._claimed.clear()
        for wake in self._listeners:
            wake()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._claimed.wait(), 1.0)


async def test_a_wakeup_that_overtakes_the_commit_answer_is_no_second_head() -> None:
    store = _NotifyingStore()
    receiver = RecordingReceiver()
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        added = await outbox.add(server.url + "/hook", order_updates(3, 5))
        with structlog.testing.capture_logs() as events:
            async with Dispatcher(store, fast_settings(max_in_flight_per_url=4)):
                counts = await settled(store, len(added))

    assert counts[DeliveryStatus.DELIVERED] == len(added)
    assert [e["event"] for e in events if e["log_level"] == "error"] == []
    arrived = [r.webhook_id for r in receiver.first_arrivals()]
    for order_id in {d.order_id for d in added}:
        submitted = [d.id for d in added if d.order_id == order_id]
        assert [i for i in arrived if i in submitted] == submitted
