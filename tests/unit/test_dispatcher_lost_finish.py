"""A node that stalled for longer than its lease: no heartbeat told it the lease was lost,
so it learns it when the store refuses to write its outcome (``store.finish(held=...)``).

The stall is a frozen clock moved past the lease with no renewal in between (the heartbeat
is left to the test, as in ``test_dispatcher_heartbeat.py``), while another node claims the
delivery; then the POST under way answers 200. The other way to learn it, a refused
renewal, is tested there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import structlog

from dhan_postback.service.dispatcher import Dispatcher
from dhan_postback.service.metrics import ServiceMetrics
from dhan_postback.service.sender import MockSender, Request
from dhan_postback.service.store.base import Claim, DeliveryStatus, NewDelivery
from dhan_postback.service.store.memory import MemoryStore
from tests.helpers.dispatching import FrozenClock, Gate, fast_settings
from tests.helpers.outbox import Outbox
from tests.helpers.updates import order_updates
from tests.helpers.waiting import eventually, eventually_async

pytestmark = pytest.mark.timeout(60)

URL = "http://127.0.0.1:8001/hook"
LEASE = 5.0
BY_HAND = 3600.0
"""The heartbeat task's interval: it never beats by itself (the node is stalled)."""


@dataclass
class Stalled:
    """One order of two updates: the first's POST was under way when the node stalled, its
    lease ran out and another node claimed it; then the POST answered 200 and its outcome
    went to the store."""

    sent: list[Request]
    first: NewDelivery
    second: NewDelivery
    other_node: list[Claim]
    store: MemoryStore
    metrics: ServiceMetrics
    logs: list[dict[str, Any]]
    now: float


async def stall_past_the_lease() -> Stalled:
    store, gate, metrics = MemoryStore(), Gate(), ServiceMetrics()
    outbox = await Outbox(store).open(URL)
    first, second = await outbox.add(URL, order_updates(1, 2))
    clock = FrozenClock()
    sender = MockSender(gate)
    settings = fast_settings(lease=LEASE, shutdown_grace=0)
    with structlog.testing.capture_logs() as logs:
        async with Dispatcher(
            store, settings, metrics=metrics, sender=sender, clock=clock, heartbeat=BY_HAND
        ) as dispatcher:
            await eventually(lambda: len(gate.waiting) == 1)
            clock.now += LEASE + 1  # stalled: no renewal in all that time
            other_node = await store.claim(limit=10, now=clock.now, lease=LEASE)
            gate.answer(200)
            await eventually_async(lambda: attempt_logged(store, first.id))
            # settled: nothing held, or (were the outcome written) the successor's POST sent
            await eventually(lambda: dispatcher.held == 0 or len(gate.waiting) == 1)
    return Stalled(
        list(sender.requests), first, second, other_node, store, metrics, logs, clock.now
    )


async def attempt_logged(store: MemoryStore, delivery_id: str) -> bool:
    return len(await store.get_attempts(delivery_id)) == 1


async def test_an_outcome_the_store_refused_leaves_the_delivery_to_the_node_that_took_it() -> None:
    stalled = await stall_past_the_lease()
    assert [claim.id for claim in stalled.other_node] == [stalled.first.id]
    delivery = await stalled.store.get_delivery(stalled.first.id)
    assert delivery is not None and delivery.status is DeliveryStatus.PENDING
    assert await stalled.store.claim(limit=10, now=stalled.now, lease=LEASE) == []


async def test_an_outcome_the_store_refused_sends_no_successor() -> None:
    stalled = await stall_past_the_lease()
    assert [request.headers["webhook-id"] for request in stalled.sent] == [stalled.first.id]
    successor = await stalled.store.get_delivery(stalled.second.id)
    assert successor is not None and successor.attempts == 0


async def test_an_outcome_the_store_refused_is_counted_as_a_lease_lost() -> None:
    stalled = await stall_past_the_lease()
    counted = stalled.metrics.registry.get_sample_value(
        "dhan_postback_leases_lost_total", {"found_at": "finish"}
    )
    assert counted == 1


async def test_outcomes_the_store_refused_are_logged_once_per_batch() -> None:
    stalled = await stall_past_the_lease()
    warnings = [log for log in stalled.logs if log["event"].startswith("leases lost")]
    assert len(warnings) == 1
    assert (warnings[0]["count"], warnings[0]["delivery_ids"]) == (1, [stalled.first.id])
