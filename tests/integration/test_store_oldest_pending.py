"""``Store.oldest_pending``, on every backend: when each URL's oldest pending delivery was
created, the age ``dhan_postback_oldest_pending_seconds`` shows."""

from __future__ import annotations

from dhan_postback.service.store import Store

from .test_store_contract import NOW, OTHER_URL, URL, claim_ids, new, outbox, outcome

__all__ = ["outbox"]  # the fixture, used by name


async def test_an_empty_outbox_has_nothing_pending(outbox: Store) -> None:
    assert await outbox.oldest_pending() == {}


async def test_each_url_gives_its_oldest_pending_delivery_over_all_its_queues(
    outbox: Store,
) -> None:
    await outbox.enqueue(
        [
            new("msg_1", order_id="a", created_at=NOW + 5),
            new("msg_2", order_id="a", created_at=NOW + 6),
            new("msg_3", order_id="b", created_at=NOW + 2),
            new("msg_4", order_id="c", url=OTHER_URL, created_at=NOW + 9),
        ]
    )
    assert await outbox.oldest_pending() == {URL: NOW + 2, OTHER_URL: NOW + 9}


async def test_a_finished_delivery_no_longer_counts(outbox: Store) -> None:
    await outbox.enqueue(
        [
            new("msg_1", created_at=NOW),
            new("msg_2", created_at=NOW + 3),
            new("msg_3", order_id="b", url=OTHER_URL, created_at=NOW),
        ]
    )
    claims = await outbox.claim(limit=10, now=NOW + 10, lease=30)
    await outbox.finish([outcome(claim, "delivered") for claim in claims])
    assert await outbox.oldest_pending() == {URL: NOW + 3}
    assert await claim_ids(outbox, now=NOW + 10) == ["msg_2"]
