"""Pausing an endpoint in the store, on every backend (``BACKENDS``).

The rule (``Store.set_paused`` and ``Store.claim``): a paused endpoint's deliveries are not
claimed; they stay pending and in order, and are claimed again once it is resumed. Another
owner's endpoint at the same URL, and every other URL, keep flowing.
"""

from __future__ import annotations

import pytest

from dhan_postback.service.store import DeliveryStatus, EndpointRecord, Store, Target

from .conftest import StoreMaker
from .test_store_contract import (
    LEASE,
    NOW,
    OTHER_TOKEN,
    OTHER_URL,
    PARTNER_URL,
    TOKEN,
    URL,
    claim_ids,
    new,
    outbox,
    outcome,
)

__all__ = ["outbox"]  # the fixture, used by name


async def endpoint_of(store: Store, owner_id: str, url: str) -> EndpointRecord:
    [found] = [e for e in await store.list_endpoints() if (e.owner_id, e.url) == (owner_id, url)]
    return found


async def pause(store: Store, owner_id: str = TOKEN.dhan_client_id, url: str = URL) -> str:
    endpoint = await endpoint_of(store, owner_id, url)
    change = await store.set_paused(endpoint.id, True)
    assert change is not None and change.changed
    return endpoint.id


async def test_a_paused_endpoint_reads_back_paused(outbox: Store) -> None:
    endpoint_id = await pause(outbox)
    stored = await outbox.get_endpoint(endpoint_id)
    assert stored is not None and stored.paused
    assert [e.paused for e in await outbox.list_endpoints() if e.id == endpoint_id] == [True]


async def test_pausing_twice_changes_nothing_the_second_time(outbox: Store) -> None:
    endpoint_id = await pause(outbox)
    again = await outbox.set_paused(endpoint_id, True)
    assert again is not None
    assert (again.changed, again.endpoint.paused) == (False, True)


async def test_resuming_is_a_change_once(outbox: Store) -> None:
    endpoint_id = await pause(outbox)
    resumed = await outbox.set_paused(endpoint_id, False)
    again = await outbox.set_paused(endpoint_id, False)
    assert resumed is not None and again is not None
    assert (resumed.changed, resumed.endpoint.paused) == (True, False)
    assert (again.changed, again.endpoint.paused) == (False, False)


async def test_pausing_an_unknown_endpoint_says_so(outbox: Store) -> None:
    assert await outbox.set_paused("ep_nope", True) is None
    assert await outbox.set_paused("ep_nope", False) is None


async def test_a_paused_endpoints_deliveries_are_not_claimed_and_stay_pending(
    outbox: Store,
) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2", order_id="order-2")])
    await pause(outbox)
    assert await claim_ids(outbox) == []
    assert await claim_ids(outbox, now=NOW + 3600) == []
    for delivery_id in ("msg_1", "msg_2"):
        stored = await outbox.get_delivery(delivery_id)
        assert stored is not None and stored.status is DeliveryStatus.PENDING


async def test_other_urls_flow_while_an_endpoint_is_paused(outbox: Store) -> None:
    await outbox.enqueue(
        [
            new("msg_paused", order_id="a"),
            new("msg_other_url", order_id="b", url=OTHER_URL),
            new("msg_partner", order_id="c", url=PARTNER_URL, target=Target.PARTNER),
        ]
    )
    await pause(outbox)
    assert sorted(await claim_ids(outbox)) == ["msg_other_url", "msg_partner"]


async def test_another_owners_endpoint_at_the_same_url_flows(outbox: Store) -> None:
    await outbox.enqueue(
        [new("msg_paused", order_id="a"), new("msg_other_owner", order_id="b", token=OTHER_TOKEN)]
    )
    await pause(outbox)
    assert await claim_ids(outbox) == ["msg_other_owner"]


async def test_a_paused_backlog_does_not_hold_back_a_small_claim(outbox: Store) -> None:
    # The paused endpoint's heads are the oldest due, at its own URL and at one it shares.
    await outbox.enqueue([new(f"msg_p{i}", order_id=f"p{i}") for i in range(5)])
    await outbox.enqueue(
        [
            new("msg_shared", order_id="s", token=OTHER_TOKEN, created_at=NOW + 1),
            new("msg_elsewhere", order_id="e", url=OTHER_URL, created_at=NOW + 2),
        ]
    )
    await pause(outbox)
    assert await claim_ids(outbox, now=NOW + 2, limit=1) == ["msg_shared"]
    assert await claim_ids(outbox, now=NOW + 2, limit=1) == ["msg_elsewhere"]


async def test_a_paused_endpoint_is_left_out_beside_skipped_urls(outbox: Store) -> None:
    await outbox.enqueue(
        [
            new("msg_paused", order_id="a"),
            new("msg_skipped", order_id="b", url=OTHER_URL),
            new("msg_partner", order_id="c", url=PARTNER_URL, target=Target.PARTNER),
        ]
    )
    await pause(outbox)
    assert await claim_ids(outbox, skip_urls={OTHER_URL}) == ["msg_partner"]


async def test_a_resumed_endpoints_deliveries_go_in_their_order(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2"), new("msg_3", order_id="order-3")])
    endpoint_id = await pause(outbox)
    assert await claim_ids(outbox) == []
    await outbox.set_paused(endpoint_id, False)
    claims = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    assert [claim.id for claim in claims] == ["msg_1", "msg_3"]  # msg_2 waits behind msg_1
    await outbox.finish([outcome(claim, "delivered") for claim in claims])
    assert await claim_ids(outbox) == ["msg_2"]


async def test_a_delivery_claimed_before_the_pause_still_finishes(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2")])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    await pause(outbox)
    await outbox.finish([outcome(claim, "delivered")])
    delivered = await outbox.get_delivery("msg_1")
    assert delivered is not None and delivered.status is DeliveryStatus.DELIVERED
    assert await claim_ids(outbox) == []  # msg_2, its successor, waits for the resume


async def test_a_pause_survives_reopening(store_maker: StoreMaker, outbox: Store) -> None:
    if not store_maker.durable:
        pytest.skip(f"{store_maker.backend} keeps nothing across stores")
    await outbox.enqueue([new("msg_1")])
    endpoint_id = await pause(outbox)
    reopened = store_maker()
    await reopened.open()
    try:
        stored = await reopened.get_endpoint(endpoint_id)
        assert stored is not None and stored.paused
        assert await claim_ids(reopened) == []
    finally:
        await reopened.close()
