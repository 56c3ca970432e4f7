"""The dispatcher's heartbeat: leases renewed while held, and what was lost left alone.

A scripted sender holds POSTs for as long as a test needs, a frozen clock moves only when the
test says so, and the heartbeat beats when the test calls :meth:`Dispatcher.renew_leases`
(``heartbeat=3600`` keeps the task itself out of the way), so no test waits on time. The same
rule over real HTTP, with the heartbeat task on its own, is in
``tests/integration/test_dispatcher_heartbeat.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import pytest

from dhan_postback.errors import StoreUnavailable
from dhan_postback.service.dispatcher import Dispatcher
from dhan_postback.service.sender import MockSender, Request
from dhan_postback.service.store.base import Claim, DeliveryStatus, NewDelivery
from dhan_postback.service.store.memory import MemoryStore
from tests.helpers.dispatching import FrozenClock, Gate, fast_settings, settled
from tests.helpers.outbox import Outbox
from tests.helpers.updates import order_updates
from tests.helpers.waiting import eventually, eventually_async

pytestmark = pytest.mark.timeout(60)

URL = "http://127.0.0.1:8001/hook"
LEASE = 5.0
BY_HAND = 3600.0
"""The heartbeat task's interval in these tests: it never beats by itself."""


async def test_a_post_longer_than_its_lease_is_not_claimed_elsewhere_while_renewed() -> None:
    store, gate = MemoryStore(), Gate()
    outbox = await Outbox(store).open(URL)
    await outbox.add(URL, order_updates(1, 1))
    clock = FrozenClock()
    sender = MockSender(gate)
    settings = fast_settings(lease=LEASE, timeout=60)  # a timeout far longer than the lease
    taken_elsewhere: list[Claim] = []
    async with Dispatcher(store, settings, sender=sender, clock=clock, heartbeat=BY_HAND) as d:
        await eventually(lambda: len(gate.waiting) == 1)
        for _ in range(5):  # 20 s of POST under a 5 s lease
            clock.now += LEASE * 0.8
            await d.renew_leases()
            taken_elsewhere += await store.claim(limit=10, now=clock.now, lease=LEASE)
        gate.answer(200)
        await settled(store, 1)

    assert taken_elsewhere == []
    assert len(sender.requests) == 1


class AwayStore(MemoryStore):
    """A store that, once ``away``, answers no claim and no renewal."""

    away = False

    async def claim(
        self, *, limit: int, now: float, lease: float, skip_urls: Collection[str] = ()
    ) -> list[Claim]:
        if self.away:
            raise StoreUnavailable("away")
        return await super().claim(limit=limit, now=now, lease=lease, skip_urls=skip_urls)

    async def renew(self, leases: Sequence[tuple[str, float]], *, until: float) -> list[str]:
        if self.away:
            raise StoreUnavailable("away")
        return await super().renew(leases, until=until)


async def test_a_claim_the_heartbeat_has_not_kept_renewed_is_given_back_not_started() -> None:
    store, gate = AwayStore(), Gate()
    outbox = await Outbox(store).open(URL)
    await outbox.add(URL, order_updates(2, 1))
    clock = FrozenClock()
    sender = MockSender(gate)
    settings = fast_settings(lease=LEASE, max_in_flight_per_url=1, shutdown_grace=0)
    async with Dispatcher(store, settings, sender=sender, clock=clock, heartbeat=BY_HAND) as d:
        await eventually(lambda: len(gate.waiting) == 1 and d.held == 2)
        store.away = True
        with contextlib.suppress(StoreUnavailable):
            await d.renew_leases()
        clock.now += LEASE * 0.6  # less than half of the second's lease is left
        gate.answer(200)
        await eventually(lambda: d.held == 0)
        sent = len(sender.requests)
        await eventually_async(lambda: given_back(store, clock.now))
        store.away = False

    assert sent == 1


async def given_back(store: MemoryStore, now: float) -> bool:
    """Whether the one queue head left is claimable at ``now``, not at its lease end."""
    due = await store.next_due()
    return due is not None and due <= now


@dataclass
class LostLeases:
    """Two orders held by a dispatcher, one POST under way and one waiting, whose leases ran
    out unrenewed and were claimed by another node; then the dispatcher's heartbeat beat and
    the POST under way answered 200."""

    sent: list[Request]
    under_way: NewDelivery
    waiting: NewDelivery
    other_node: list[Claim]
    store: MemoryStore
    now: float


async def lose_both_leases() -> LostLeases:
    store, gate = MemoryStore(), Gate()
    outbox = await Outbox(store).open(URL)
    under_way, waiting = await outbox.add(URL, order_updates(2, 1))
    clock = FrozenClock()
    sender = MockSender(gate)
    settings = fast_settings(lease=LEASE, max_in_flight_per_url=1, shutdown_grace=0)
    async with Dispatcher(store, settings, sender=sender, clock=clock, heartbeat=BY_HAND) as d:
        await eventually(lambda: len(gate.waiting) == 1 and d.held == 2)
        clock.now += LEASE + 1  # the store was away for a whole lease
        other_node = await store.claim(limit=10, now=clock.now, lease=LEASE)
        await d.renew_leases()
        gate.answer(200)
        await eventually(lambda: d.held == 0)
    return LostLeases(list(sender.requests), under_way, waiting, other_node, store, clock.now)


async def test_a_claim_whose_lease_was_lost_while_waiting_is_never_sent() -> None:
    lost = await lose_both_leases()
    assert [request.headers["webhook-id"] for request in lost.sent] == [lost.under_way.id]


async def test_the_outcome_of_a_post_whose_lease_was_lost_under_way_is_not_written() -> None:
    lost = await lose_both_leases()
    delivery = await lost.store.get_delivery(lost.under_way.id)
    assert delivery is not None and delivery.status is DeliveryStatus.PENDING
    assert await lost.store.get_attempts(lost.under_way.id) == []


async def test_lost_leases_are_not_given_back_over_the_node_that_took_them() -> None:
    lost = await lose_both_leases()
    assert len(lost.other_node) == 2
    assert await lost.store.claim(limit=10, now=lost.now, lease=LEASE) == []


async def test_a_lost_delivery_whose_outcome_waits_to_be_written_is_dropped_from_the_batch() -> (
    None
):
    store, gate = MemoryStore(), Gate()
    outbox = await Outbox(store).open(URL)
    [delivery] = await outbox.add(URL, order_updates(1, 1))
    clock = FrozenClock()
    settings = fast_settings(lease=LEASE)
    dispatcher = Dispatcher(
        store, settings, sender=MockSender(gate), clock=clock, heartbeat=BY_HAND, flush_interval=1
    )
    async with dispatcher:
        await eventually(lambda: len(gate.waiting) == 1)
        gate.answer(200)
        await eventually(lambda: dispatcher.in_flight == 0)  # its outcome waits for the batch
        clock.now += LEASE + 1
        other_node = await store.claim(limit=10, now=clock.now, lease=LEASE)
        await dispatcher.renew_leases()

    assert [claim.id for claim in other_node] == [delivery.id]
    assert await store.get_attempts(delivery.id) == []


async def test_a_post_that_outlived_its_lease_unrenewed_and_untaken_is_written() -> None:
    store, gate = MemoryStore(), Gate()
    outbox = await Outbox(store).open(URL)
    [delivery] = await outbox.add(URL, order_updates(1, 1))
    clock = FrozenClock()
    sender = MockSender(gate)
    settings = fast_settings(lease=LEASE)
    async with Dispatcher(store, settings, sender=sender, clock=clock, heartbeat=BY_HAND):
        await eventually(lambda: len(gate.waiting) == 1)
        clock.now += LEASE + 1  # the heartbeat never beat; no other node took it
        gate.answer(200)
        await settled(store, 1)

    shown = await store.get_delivery(delivery.id)
    assert shown is not None and shown.status is DeliveryStatus.DELIVERED


async def test_the_heartbeat_renews_the_leases_held_by_itself() -> None:
    store, gate = MemoryStore(), Gate()
    outbox = await Outbox(store).open(URL)
    await outbox.add(URL, order_updates(1, 1))
    async with Dispatcher(store, fast_settings(), sender=MockSender(gate), heartbeat=0.01):
        await eventually(lambda: len(gate.waiting) == 1)
        first_end = await store.next_due()  # the head's lease end
        assert first_end is not None
        await eventually_async(lambda: lease_ends_after(store, first_end))
        gate.answer(200)


async def lease_ends_after(store: MemoryStore, end: float) -> bool:
    later = await store.next_due()
    return later is not None and later > end
