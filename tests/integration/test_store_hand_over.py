"""Hand-overs, on every backend (``BACKENDS``): ``enqueue`` and ``finish`` given a
:class:`HandOver` lease, in their own transaction, the heads they make to the committing
node, exactly as ``claim`` on the same terms would; what a claim would skip stays claimable.
"""

from __future__ import annotations

import asyncio

import pytest

from dhan_postback.service.store import Claim, HandOver, Store, Target

from .conftest import StoreMaker
from .test_store_contract import (
    LEASE,
    NOW,
    OTHER_TOKEN,
    OTHER_URL,
    PARTNER_URL,
    URL,
    claim_ids,
    new,
    outbox,
    outcome,
)
from .test_store_pause import pause

__all__ = ["outbox"]  # the fixture, used by name


def terms(limit: int = 100, *, now: float = NOW, skip: set[str] | None = None) -> HandOver:
    return HandOver(limit=limit, now=now, lease=LEASE, skip_urls=skip or set())


def ids(claims: list[Claim] | None) -> list[str]:
    assert claims is not None
    return [claim.id for claim in claims]


# Enqueue -------------------------------------------------------------------------------------


async def test_an_enqueue_hands_over_the_heads_it_makes_leased_as_a_claim_would(
    outbox: Store,
) -> None:
    delivery = new("msg_1")
    [claim] = await outbox.enqueue([delivery], hand_over=terms()) or []
    assert (claim.id, claim.url, claim.order_id) == ("msg_1", URL, "order-1")
    assert claim.payload == delivery.payload
    assert (claim.attempts, claim.round_attempts, claim.after_dead) == (0, 0, False)
    assert claim.lease_until == NOW + LEASE
    assert await claim_ids(outbox, now=NOW + LEASE - 1) == []  # leased: no node claims it


async def test_a_handed_over_head_is_signed_like_a_claimed_one(outbox: Store) -> None:
    await outbox.enqueue([new("msg_t"), new("msg_p", url=PARTNER_URL, target=Target.PARTNER)])
    claims = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    secrets = {claim.id: claim.signing_secret for claim in claims}
    partners = new("msg_p2", order_id="p2", url=PARTNER_URL, target=Target.PARTNER)
    handed = await outbox.enqueue([new("msg_t2", order_id="t2"), partners], hand_over=terms())
    assert {claim.id: claim.signing_secret for claim in handed or []} == {
        "msg_t2": secrets["msg_t"],
        "msg_p2": secrets["msg_p"],
    }


async def test_an_enqueue_hands_over_only_queue_heads(outbox: Store) -> None:
    handed = await outbox.enqueue(
        [new("msg_1", order_id="a"), new("msg_2", order_id="a"), new("msg_3", order_id="b")],
        hand_over=terms(),
    )
    assert ids(handed) == ["msg_1", "msg_3"]
    assert await claim_ids(outbox) == []


async def test_an_update_behind_a_leased_head_is_not_handed_over(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    assert await claim_ids(outbox) == ["msg_1"]
    assert ids(await outbox.enqueue([new("msg_2")], hand_over=terms())) == []


async def test_an_enqueue_hands_over_at_most_its_limit_and_leaves_the_rest_claimable(
    outbox: Store,
) -> None:
    handed = await outbox.enqueue(
        [new(f"msg_{i}", order_id=f"order-{i}") for i in range(4)], hand_over=terms(limit=2)
    )
    assert ids(handed) == ["msg_0", "msg_1"]
    assert await claim_ids(outbox) == ["msg_2", "msg_3"]


async def test_a_zero_limit_hands_over_nothing(outbox: Store) -> None:
    assert ids(await outbox.enqueue([new("msg_1")], hand_over=terms(limit=0))) == []
    assert await claim_ids(outbox) == ["msg_1"]


async def test_a_skipped_url_is_not_handed_over(outbox: Store) -> None:
    handed = await outbox.enqueue(
        [new("msg_a", url=URL), new("msg_b", url=OTHER_URL, token=OTHER_TOKEN)],
        hand_over=terms(skip={URL}),
    )
    assert ids(handed) == ["msg_b"]
    assert await claim_ids(outbox) == ["msg_a"]


async def test_a_delivery_not_yet_due_is_not_handed_over(outbox: Store) -> None:
    handed = await outbox.enqueue([new("msg_1", created_at=NOW + 5)], hand_over=terms())
    assert ids(handed) == []
    assert await claim_ids(outbox, now=NOW + 5) == ["msg_1"]


async def test_a_paused_endpoints_heads_are_not_handed_over(outbox: Store) -> None:
    await pause(outbox)
    handed = await outbox.enqueue(
        [new("msg_a", url=URL), new("msg_b", url=OTHER_URL, token=OTHER_TOKEN)],
        hand_over=terms(),
    )
    assert ids(handed) == ["msg_b"]
    assert await claim_ids(outbox) == []


async def test_without_a_hand_over_an_enqueue_leases_nothing(outbox: Store) -> None:
    assert await outbox.enqueue([new("msg_1")]) is None
    assert await claim_ids(outbox) == ["msg_1"]


# Finish --------------------------------------------------------------------------------------


async def test_a_delivered_heads_successor_is_handed_over_by_the_finish(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2"), new("msg_3")])
    [head] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    handed = await outbox.finish([outcome(head, "delivered")], hand_over=terms(now=NOW + 1))
    [successor] = handed or []
    assert (successor.id, successor.lease_until) == ("msg_2", NOW + 1 + LEASE)
    assert await claim_ids(outbox, now=NOW + 2) == []  # leased to this node


async def test_a_dead_heads_successor_is_handed_over_flagged_after_dead(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2")])
    [head] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    [successor] = await outbox.finish([outcome(head, "dead", status_code=500)], hand_over=terms())
    assert (successor.id, successor.after_dead) == ("msg_2", True)


async def test_a_retried_head_and_its_queue_are_left_to_the_claim(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2")])
    [head] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    retry = outcome(head, "retry", status_code=500, next_attempt_at=NOW)
    assert ids(await outbox.finish([retry], hand_over=terms())) == []
    assert await claim_ids(outbox) == ["msg_1"]


async def test_a_finish_hands_over_successors_of_its_own_queues_only(outbox: Store) -> None:
    await outbox.enqueue([new("msg_a1", order_id="a"), new("msg_a2", order_id="a")])
    await outbox.enqueue([new("msg_b1", order_id="b")])
    heads = {claim.id: claim for claim in await outbox.claim(limit=10, now=NOW, lease=LEASE)}
    await outbox.release(["msg_b1"])
    handed = await outbox.finish([outcome(heads["msg_a1"], "delivered")], hand_over=terms())
    assert ids(handed) == ["msg_a2"]
    assert await claim_ids(outbox) == ["msg_b1"]


async def test_a_finish_hands_over_at_most_its_limit_oldest_first(outbox: Store) -> None:
    for order in "abc":
        await outbox.enqueue([new(f"msg_{order}1", order_id=order)])
        await outbox.enqueue([new(f"msg_{order}2", order_id=order)])
    heads = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    done = [outcome(head, "delivered") for head in heads]
    assert ids(await outbox.finish(done, hand_over=terms(limit=2))) == ["msg_a2", "msg_b2"]
    assert await claim_ids(outbox) == ["msg_c2"]


async def test_a_finish_leaves_a_skipped_urls_successor_claimable(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2")])
    [head] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    assert ids(await outbox.finish([outcome(head, "delivered")], hand_over=terms(skip={URL}))) == []
    assert await claim_ids(outbox) == ["msg_2"]


async def test_a_finish_leaves_a_paused_endpoints_successor_pending(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2")])
    [head] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    await pause(outbox)
    assert ids(await outbox.finish([outcome(head, "delivered")], hand_over=terms())) == []


async def test_without_a_hand_over_a_finish_leases_nothing(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2")])
    [head] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    assert await outbox.finish([outcome(head, "delivered")]) is None
    assert await claim_ids(outbox) == ["msg_2"]


# Several nodes -------------------------------------------------------------------------------


async def test_a_head_handed_over_to_one_node_is_never_claimed_by_another(
    outbox: Store, store_maker: StoreMaker
) -> None:
    """Two nodes (two stores on one database) enqueue with hand-overs and claim at once:
    every delivery goes to exactly one of them."""
    if not store_maker.durable:
        pytest.skip(f"{store_maker.backend} is one process's memory")
    other = store_maker()
    await other.open()
    try:
        given: list[str] = []

        async def ingest(store: Store, start: int) -> None:
            for n in range(start, start + 20):
                handed = await store.enqueue(
                    [new(f"msg_{n}", order_id=f"order-{n}")], hand_over=terms(limit=1)
                )
                given.extend(ids(handed))

        async def claim(store: Store) -> None:
            for _ in range(20):
                given.extend(await claim_ids(store))
                await asyncio.sleep(0)

        await asyncio.gather(ingest(outbox, 0), claim(other), ingest(other, 20), claim(outbox))
        given.extend(await claim_ids(outbox))
        assert sorted(given) == sorted(f"msg_{n}" for n in range(40))
    finally:
        await other.close()
