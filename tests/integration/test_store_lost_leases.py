"""Finishes and give-backs under a lease, on every backend (``BACKENDS``): given the leases
the dispatcher holds (:class:`Held`), ``finish`` and ``release`` apply only to deliveries
whose lease is still as held, the rule ``renew`` keeps. A node that stalled for longer than
its lease finds its deliveries claimed by another node: its late outcome is logged, but the
delivery, its queue and its new holder's lease are left alone, and the id is named lost.
"""

from __future__ import annotations

from typing import Literal

import pytest

from dhan_postback.service.store import Claim, DeliveryStatus, HandOver, Held, Store

from .test_store_contract import LEASE, NOW, claim_ids, new, outbox, outcome, prune

__all__ = ["outbox"]  # the fixture, used by name

LATER = NOW + LEASE + 1
"""When another node claims what ours held: our lease ran out unrenewed (a stalled node)."""


def held(*claims: Claim) -> Held:
    return Held({claim.id: claim.lease_until for claim in claims})


async def taken_over(store: Store) -> tuple[Claim, Claim]:
    """msg_1 (followed by msg_2 in its queue) as our claim, and another node's claim of it
    made after our lease ran out."""
    await store.enqueue([new("msg_1"), new("msg_2")])
    [ours] = await store.claim(limit=10, now=NOW, lease=LEASE)
    [theirs] = await store.claim(limit=10, now=LATER, lease=LEASE)
    return ours, theirs


@pytest.mark.parametrize("result", ["delivered", "retry", "dead"])
async def test_a_finish_after_another_node_took_the_lease_changes_nothing_but_the_log(
    outbox: Store, result: Literal["delivered", "retry", "dead"]
) -> None:
    ours, theirs = await taken_over(outbox)
    failed = result != "delivered"
    retry_at = NOW + 1 if result == "retry" else None
    late = outcome(ours, result, status_code=500 if failed else 200, next_attempt_at=retry_at)
    lease = held(ours)
    await outbox.finish([late], held=lease)
    assert lease.lost == ["msg_1"]
    assert await outbox.get_attempts("msg_1") == [late.attempt]
    delivery = await outbox.get_delivery("msg_1")
    assert delivery is not None
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 0)
    successor = await outbox.get_delivery("msg_2")
    assert successor is not None and not successor.after_dead
    # their lease is as they hold it: renewed for them, and nobody else may claim the queue
    assert await outbox.renew([(theirs.id, theirs.lease_until)], until=LATER + 2 * LEASE) == [
        "msg_1"
    ]
    assert await claim_ids(outbox, now=LATER + LEASE) == []


async def test_a_lost_finish_hands_over_no_successor(outbox: Store) -> None:
    ours, _ = await taken_over(outbox)
    terms = HandOver(limit=10, now=LATER + 1, lease=LEASE)
    handed = await outbox.finish([outcome(ours, "delivered")], hand_over=terms, held=held(ours))
    assert handed == []
    delivery = await outbox.get_delivery("msg_2")
    assert delivery is not None and delivery.status is DeliveryStatus.PENDING
    assert await claim_ids(outbox, now=LATER + LEASE) == ["msg_1"]  # their lease, run out


async def test_a_finish_under_the_lease_still_held_moves_on_and_hands_over(
    outbox: Store,
) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2")])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    renewed = NOW + 20.123456789  # a heartbeat's renewal: the lease held is the renewed one
    assert await outbox.renew([(claim.id, claim.lease_until)], until=renewed) == ["msg_1"]
    lease = Held({claim.id: renewed})
    terms = HandOver(limit=10, now=NOW + 1, lease=LEASE)
    handed = await outbox.finish([outcome(claim, "delivered")], hand_over=terms, held=lease)
    assert [successor.id for successor in handed or []] == ["msg_2"]
    assert lease.lost == []
    delivery = await outbox.get_delivery("msg_1")
    assert delivery is not None and delivery.status is DeliveryStatus.DELIVERED


async def test_a_finish_under_a_lease_that_ran_out_untaken_applies(outbox: Store) -> None:
    """As a renewal: nobody can have sent it since, so the outcome stands."""
    await outbox.enqueue([new("msg_1")])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    lease = held(claim)
    await outbox.finish([outcome(claim, "delivered", at=LATER)], held=lease)
    assert lease.lost == []
    delivery = await outbox.get_delivery("msg_1")
    assert delivery is not None and delivery.status is DeliveryStatus.DELIVERED


async def test_a_batch_applies_the_outcomes_still_held_and_names_the_lost_ones(
    outbox: Store,
) -> None:
    await outbox.enqueue([new("msg_a", order_id="a"), new("msg_b", order_id="b")])
    claims = {claim.id: claim for claim in await outbox.claim(limit=10, now=NOW, lease=LEASE)}
    await outbox.release(["msg_b"])  # given back meanwhile (say, by an operator's replay)
    lease = held(*claims.values())
    both = [outcome(claims[delivery_id], "delivered") for delivery_id in ("msg_a", "msg_b")]
    await outbox.finish(both, held=lease)
    assert lease.lost == ["msg_b"]
    assert await outbox.counts() == {
        DeliveryStatus.PENDING: 1,
        DeliveryStatus.DELIVERED: 1,
        DeliveryStatus.DEAD: 0,
    }


async def test_an_outcome_whose_lease_is_not_held_is_lost(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    lease = Held({})
    await outbox.finish([outcome(claim, "delivered")], held=lease)
    assert lease.lost == ["msg_1"]
    delivery = await outbox.get_delivery("msg_1")
    assert delivery is not None and delivery.status is DeliveryStatus.PENDING


async def test_a_lost_finish_of_a_pruned_delivery_logs_nothing(outbox: Store) -> None:
    ours, theirs = await taken_over(outbox)
    await outbox.finish([outcome(theirs, "delivered")], held=held(theirs))
    await prune(outbox)
    lease = held(ours)
    await outbox.finish([outcome(ours, "delivered")], held=lease)
    assert lease.lost == ["msg_1"]
    assert await outbox.get_attempts("msg_1") == []


async def test_a_release_after_another_node_took_the_lease_changes_nothing(
    outbox: Store,
) -> None:
    ours, theirs = await taken_over(outbox)
    lease = held(ours)
    await outbox.release([ours.id], held=lease)
    assert lease.lost == ["msg_1"]
    assert await claim_ids(outbox, now=theirs.lease_until - 0.001) == []
    assert await outbox.renew([(theirs.id, theirs.lease_until)], until=LATER + 2 * LEASE) == [
        "msg_1"
    ]


async def test_a_release_under_the_lease_still_held_gives_the_delivery_back(
    outbox: Store,
) -> None:
    await outbox.enqueue([new("msg_1")])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    lease = held(claim)
    await outbox.release([claim.id], held=lease)
    assert lease.lost == []
    assert await claim_ids(outbox, now=NOW + 1) == ["msg_1"]
