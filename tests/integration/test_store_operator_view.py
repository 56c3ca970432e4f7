"""The dashboard's store queries, on every backend (``BACKENDS``): an endpoint's attempts per
minute, its recent failures, and the recent orders.

Each query reads only what it describes: another endpoint's attempts (another URL, another
owner at the same URL) and attempts outside the asked range never count.
"""

from __future__ import annotations

import pytest

from dhan_postback.service.store import (
    Attempt,
    DeliveryStatus,
    EndpointRecord,
    MinuteCounts,
    OrderQuery,
    Outcome,
    Store,
    Target,
)

from .test_store_contract import (
    LEASE,
    NOW,
    OTHER_TOKEN,
    OTHER_URL,
    PARTNER_URL,
    URL,
    new,
    outbox,
)
from .test_store_endpoints import endpoint_at

__all__ = ["outbox"]

MINUTE = NOW - NOW % 60
"""The first second of the minute NOW falls in."""


def attempt(
    delivery_id: str, at: float, status: int | None, *, number: int = 1, body: str = ""
) -> Attempt:
    return Attempt(
        delivery_id=delivery_id,
        number=number,
        started_at=at,
        latency_ms=5.0,
        status_code=status,
        error=None if status is not None and status < 300 else "boom",
        response_prefix=body,
    )


async def answer(store: Store, *answers: tuple[str, float, int | None]) -> None:
    """Claim each delivery and record one attempt per (id, started_at, status): 2xx
    delivers it, anything else schedules a retry."""
    for delivery_id, at, status in answers:
        claims = await store.claim(limit=100, now=NOW + 86_400, lease=LEASE)
        [claim] = [c for c in claims if c.id == delivery_id]
        done = status is not None and 200 <= status < 300
        await store.finish(
            [
                Outcome(
                    attempt(delivery_id, at, status, number=claim.attempts + 1, body=f"{status}"),
                    "delivered" if done else "retry",
                    next_attempt_at=None if done else at,
                )
            ]
        )
        await store.release([c.id for c in claims if c.id != delivery_id])


async def client_endpoint(store: Store, url: str = URL) -> EndpointRecord:
    [found] = [
        e
        for e in await store.list_endpoints()
        if e.url == url and e.kind.value == "client" and e.owner_id == "1000000001"
    ]
    return found


@pytest.fixture
async def traffic(outbox: Store) -> Store:
    """Client 1's URL: two minutes of answers (2 delivered and 1 failed in the first, 1
    failed then 1 delivered in the second), one attempt two hours back; the other client's
    delivery to the same URL, the partner's, and one to the other URL, all failing."""
    await outbox.enqueue(
        [
            new("m1", order_id="o1"),
            new("m2", order_id="o2"),
            new("m3", order_id="o3"),
            new("m4", order_id="o4"),
            new("old", order_id="o5"),
            new("theirs", order_id="o6", token=OTHER_TOKEN),
            new("partner", order_id="o7", url=PARTNER_URL, target=Target.PARTNER),
            new("other-url", order_id="o8", url=OTHER_URL),
        ]
    )
    await answer(
        outbox,
        ("m1", MINUTE + 1, 200),
        ("m2", MINUTE + 20, 204),
        ("m3", MINUTE + 59.5, 503),
        ("m3", MINUTE + 60, None),
        ("m4", MINUTE + 119, 200),
        ("old", MINUTE - 7200, 500),
        ("theirs", MINUTE + 5, 500),
        ("partner", MINUTE + 5, 500),
        ("other-url", MINUTE + 5, 500),
    )
    return outbox


async def test_an_endpoints_attempts_are_counted_per_minute_delivered_and_failed(
    traffic: Store,
) -> None:
    ours = await client_endpoint(traffic)
    minutes = await traffic.endpoint_minutes(ours, since=MINUTE - 3600, until=MINUTE + 3600)
    assert minutes == [MinuteCounts(MINUTE, 2, 1), MinuteCounts(MINUTE + 60, 1, 1)]


async def test_per_minute_counts_leave_out_attempts_outside_the_range(traffic: Store) -> None:
    ours = await client_endpoint(traffic)
    minutes = await traffic.endpoint_minutes(ours, since=MINUTE + 30, until=MINUTE + 119)
    assert minutes == [MinuteCounts(MINUTE, 0, 1), MinuteCounts(MINUTE + 60, 0, 1)]


async def test_an_endpoint_without_attempts_has_no_minutes(outbox: Store) -> None:
    ours = await client_endpoint(outbox)
    assert await outbox.endpoint_minutes(ours, since=0, until=NOW * 2) == []


async def test_an_endpoints_failures_come_newest_first_with_their_answers(traffic: Store) -> None:
    ours = await client_endpoint(traffic)
    failures = await traffic.endpoint_failures(ours, since=MINUTE - 3600, limit=10)
    assert [(a.delivery_id, a.number, a.status_code, a.response_prefix) for a in failures] == [
        ("m3", 2, None, "None"),
        ("m3", 1, 503, "503"),
    ]


async def test_failures_are_limited_and_start_at_since(traffic: Store) -> None:
    ours = await client_endpoint(traffic)
    everything = await traffic.endpoint_failures(ours, since=0, limit=10)
    assert [a.delivery_id for a in everything] == ["m3", "m3", "old"]
    assert [a.number for a in await traffic.endpoint_failures(ours, since=0, limit=1)] == [2]


async def test_a_partner_endpoints_failures_are_its_own(traffic: Store) -> None:
    partners = await endpoint_at(traffic, PARTNER_URL)
    failures = await traffic.endpoint_failures(partners, since=0, limit=10)
    assert [a.delivery_id for a in failures] == ["partner"]
    minutes = await traffic.endpoint_minutes(partners, since=0, until=NOW * 2)
    assert minutes == [MinuteCounts(MINUTE, 0, 1)]


async def test_recent_orders_come_most_recently_updated_first_with_their_counts(
    outbox: Store,
) -> None:
    await outbox.enqueue(
        [
            new("a1", order_id="A", created_at=NOW),
            new("b1", order_id="B", created_at=NOW + 1),
            new("a2", order_id="A", created_at=NOW + 2),
            new("c1", order_id="C", created_at=NOW + 3, token=OTHER_TOKEN),
        ]
    )
    claims = await outbox.claim(limit=10, now=NOW + 10, lease=LEASE)
    b1 = next(c for c in claims if c.id == "b1")
    await outbox.finish([Outcome(attempt("b1", NOW + 10, 500), "dead")])
    await outbox.release([c.id for c in claims if c is not b1])

    orders = await outbox.recent_orders(OrderQuery(limit=10))
    assert [(o.order_id, o.deliveries, o.pending, o.dead) for o in orders] == [
        ("C", 1, 1, 0),
        ("A", 2, 2, 0),
        ("B", 1, 0, 1),
    ]
    a = orders[1]
    assert (a.dhan_client_id, a.last_created_at) == ("1000000001", NOW + 2)
    assert a.last_payload == b'{"orderId":"A","id":"a2"}'
    assert [o.order_id for o in await outbox.recent_orders(OrderQuery(limit=2))] == ["C", "A"]


async def test_recent_orders_can_be_one_clients_and_one_targets(outbox: Store) -> None:
    await outbox.enqueue(
        [
            new("a1", order_id="A"),
            new("p1", order_id="P", url=PARTNER_URL, target=Target.PARTNER),
            new("c1", order_id="C", token=OTHER_TOKEN),
        ]
    )
    mine = await outbox.recent_orders(OrderQuery(dhan_client_id="1000000001", target=Target.TOKEN))
    assert [o.order_id for o in mine] == ["A"]
    clients = await outbox.recent_orders(OrderQuery(dhan_client_id="1000000001"))
    assert [o.order_id for o in clients] == ["P", "A"]


async def test_recent_orders_read_only_the_newest_window_of_deliveries(outbox: Store) -> None:
    await outbox.enqueue([new(f"m{n}", order_id=f"order-{n}") for n in range(5)])
    orders = await outbox.recent_orders(OrderQuery(window=3, limit=10))
    assert [o.order_id for o in orders] == ["order-4", "order-3", "order-2"]
    assert (await outbox.counts())[DeliveryStatus.PENDING] == 5
