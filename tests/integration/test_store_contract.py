"""The Store contract, run against every backend (see ``BACKENDS`` in conftest.py).

Each test states one rule of the outbox, the registry or the delivery log, as the module
docstring of ``dhan_postback.service.store.base`` describes them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Literal

import pytest

from dhan_postback.errors import Conflict
from dhan_postback.service.registry import register_partner, register_token
from dhan_postback.service.store import (
    Attempt,
    Claim,
    DeliveryQuery,
    DeliveryStatus,
    IdempotencyRecord,
    NewDelivery,
    Outcome,
    PartnerRecord,
    PruneResult,
    Store,
    Target,
    TokenRecord,
)

from .conftest import StoreMaker

NOW = 1_700_000_000.0
LEASE = 30.0
URL = "https://hooks.example/a"
OTHER_URL = "https://hooks.example/b"
PARTNER_URL = "https://partner.example/hook"
TOKEN = TokenRecord(
    token_hash="a" * 64,
    dhan_client_id="1000000001",
    postback_url=URL,
    partner_id="acme",
    created_at=NOW - 100,
    expires_at=NOW + 86400,
)
TOKEN_SECRET = "whsec_dG9rZW4tc2VjcmV0"
OTHER_TOKEN = TokenRecord(
    token_hash="b" * 64,
    dhan_client_id="1000000002",
    postback_url=OTHER_URL,
    partner_id=None,
    created_at=NOW - 100,
    expires_at=NOW + 86400,
)
OTHER_SECRET = "whsec_b3RoZXItc2VjcmV0"
PARTNER = PartnerRecord("acme", PARTNER_URL, NOW - 200)
PARTNER_SECRET = "whsec_cGFydG5lci1zZWNyZXQ="


@pytest.fixture
async def outbox(store: Store) -> Store:
    """A store with two clients' tokens and a partner, each with its endpoint, ready for
    deliveries."""
    await register_partner(store, PARTNER, PARTNER_SECRET)
    await register_token(store, TOKEN, TOKEN_SECRET)
    await register_token(store, OTHER_TOKEN, OTHER_SECRET)
    # Many tests send one client's deliveries to both URLs: each client has an endpoint at
    # each (as if it had had a token for each).
    for token, url, secret, other_hash in (
        (TOKEN, OTHER_URL, OTHER_SECRET, "e" * 64),
        (OTHER_TOKEN, URL, TOKEN_SECRET, "f" * 64),
    ):
        other = dataclasses.replace(token, token_hash=other_hash, postback_url=url)
        await register_token(store, other, secret)
    return store


def without_endpoint(token: TokenRecord | None) -> TokenRecord | None:
    """A token as added (the store fills in ``endpoint_id`` when reading it back)."""
    return None if token is None else dataclasses.replace(token, endpoint_id=None)


def new(
    delivery_id: str,
    *,
    order_id: str = "order-1",
    url: str = URL,
    token: TokenRecord = TOKEN,
    target: Target = Target.TOKEN,
    created_at: float = NOW,
) -> NewDelivery:
    return NewDelivery(
        id=delivery_id,
        dhan_client_id=token.dhan_client_id,
        token_hash=token.token_hash,
        target=target,
        partner_id=token.partner_id if target is Target.PARTNER else None,
        url=url,
        order_id=order_id,
        payload=f'{{"orderId":"{order_id}","id":"{delivery_id}"}}'.encode(),
        created_at=created_at,
    )


async def claim_ids(store: Store, *, now: float = NOW, limit: int = 100, **kw: object) -> list[str]:
    claims = await store.claim(limit=limit, now=now, lease=LEASE, **kw)  # type: ignore[arg-type]
    return [claim.id for claim in claims]


def outcome(
    claim: Claim | str,
    result: Literal["delivered", "retry", "dead"],
    *,
    at: float = NOW,
    status_code: int | None = 200,
    next_attempt_at: float | None = None,
    number: int = 1,
) -> Outcome:
    delivery_id = claim if isinstance(claim, str) else claim.id
    attempt = Attempt(
        delivery_id=delivery_id,
        number=number,
        started_at=at,
        latency_ms=12.5,
        status_code=status_code,
        error=None if status_code == 200 else "HTTP 500",
        response_prefix="ok" if status_code == 200 else "boom",
    )
    return Outcome(attempt=attempt, result=result, next_attempt_at=next_attempt_at)


async def settle(store: Store, ids: Sequence[str], result: Literal["delivered", "dead"]) -> None:
    await store.finish([outcome(delivery_id, result) for delivery_id in ids])


# Enqueue and claim ----------------------------------------------------------------------------


async def test_an_enqueued_delivery_is_claimed_with_its_payload_and_a_lease(outbox: Store) -> None:
    delivery = new("msg_1")
    await outbox.enqueue([delivery])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    assert claim.id == "msg_1"
    assert claim.url == URL
    assert claim.order_id == "order-1"
    assert claim.payload == delivery.payload
    assert claim.attempts == 0
    assert claim.round_attempts == 0
    assert claim.lease_until == NOW + LEASE
    assert claim.after_dead is False


async def test_payload_bytes_come_back_exactly(outbox: Store) -> None:
    body = '{"tradingSymbol":"नमस्ते \\"q\\" \\\\ / \u2028","n":1.0}'.encode()
    await outbox.enqueue([dataclasses.replace(new("msg_1"), payload=body)])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    stored = await outbox.get_delivery("msg_1")
    assert claim.payload == body
    assert stored is not None and stored.payload == body


async def test_a_delivery_is_not_claimed_before_it_was_created(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1", created_at=NOW)])
    assert await claim_ids(outbox, now=NOW - 1) == []


async def test_enqueueing_an_existing_id_is_a_conflict_and_stores_nothing(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    with pytest.raises(Conflict):
        await outbox.enqueue([new("msg_2", order_id="order-2"), new("msg_1")])
    assert await outbox.get_delivery("msg_2") is None


async def test_enqueueing_nothing_is_allowed(outbox: Store) -> None:
    await outbox.enqueue([])
    assert await outbox.counts() == dict.fromkeys(DeliveryStatus, 0)


async def test_claim_takes_at_most_limit_oldest_first(outbox: Store) -> None:
    await outbox.enqueue([new(f"msg_{i}", order_id=f"order-{i}") for i in range(5)])
    assert await claim_ids(outbox, limit=3) == ["msg_0", "msg_1", "msg_2"]
    assert await claim_ids(outbox, limit=3) == ["msg_3", "msg_4"]


async def test_claim_orders_by_due_time_before_sequence(outbox: Store) -> None:
    await outbox.enqueue([new("msg_a", order_id="a"), new("msg_b", order_id="b")])
    [first, _] = await outbox.claim(limit=2, now=NOW, lease=LEASE)
    await outbox.finish([outcome(first, "retry", status_code=500, next_attempt_at=NOW + 5)])
    await outbox.release(["msg_b"])
    assert await claim_ids(outbox, now=NOW + 10) == ["msg_b", "msg_a"]


async def test_claim_skips_the_urls_it_is_told_to_skip(outbox: Store) -> None:
    await outbox.enqueue([new("msg_a", url=URL), new("msg_b", url=OTHER_URL)])
    assert await claim_ids(outbox, skip_urls={URL}) == ["msg_b"]
    assert await claim_ids(outbox) == ["msg_a"]


async def test_a_skipped_urls_large_backlog_does_not_hide_the_other_urls_due_heads(
    outbox: Store,
) -> None:
    backlog = [new(f"msg_old_{i}", order_id=f"old-{i}", created_at=NOW - 10) for i in range(2000)]
    await outbox.enqueue(backlog)
    await outbox.enqueue(
        [
            new("msg_b1", url=OTHER_URL, token=OTHER_TOKEN, order_id="b1"),
            new("msg_p1", url=PARTNER_URL, target=Target.PARTNER, order_id="p1"),
            new("msg_b2", url=OTHER_URL, token=OTHER_TOKEN, order_id="b2"),
        ]
    )
    assert await claim_ids(outbox, limit=2, skip_urls={URL}) == ["msg_b1", "msg_p1"]
    assert await claim_ids(outbox, limit=2, skip_urls={URL}) == ["msg_b2"]


async def test_a_claim_that_skips_a_url_takes_only_due_unleased_heads_of_the_others(
    outbox: Store,
) -> None:
    await outbox.enqueue(
        [
            new("msg_a", url=URL, order_id="a"),
            new("msg_b1", url=OTHER_URL, token=OTHER_TOKEN, order_id="b"),
            new("msg_b2", url=OTHER_URL, token=OTHER_TOKEN, order_id="b"),
            new("msg_c", url=OTHER_URL, token=OTHER_TOKEN, order_id="c"),
            new("msg_later", url=OTHER_URL, token=OTHER_TOKEN, order_id="d", created_at=NOW + 10),
        ]
    )
    assert await claim_ids(outbox, limit=1, skip_urls={URL}) == ["msg_b1"]
    assert await claim_ids(outbox, skip_urls={URL}) == ["msg_c"]
    assert await claim_ids(outbox, skip_urls={URL, PARTNER_URL}) == []
    assert await claim_ids(outbox, now=NOW + 10, skip_urls={URL}) == ["msg_later"]


async def test_a_claim_that_skips_a_url_takes_the_oldest_due_heads_of_the_others(
    outbox: Store,
) -> None:
    await outbox.enqueue(
        [
            new("msg_b_new", url=OTHER_URL, token=OTHER_TOKEN, order_id="b1", created_at=NOW - 1),
            new("msg_p", url=PARTNER_URL, target=Target.PARTNER, order_id="p", created_at=NOW - 5),
            new("msg_a", url=URL, order_id="a", created_at=NOW - 9),
            new("msg_b_old", url=OTHER_URL, token=OTHER_TOKEN, order_id="b2", created_at=NOW - 3),
        ]
    )
    assert await claim_ids(outbox, limit=2, skip_urls={URL}) == ["msg_p", "msg_b_old"]
    assert await claim_ids(outbox, limit=2, skip_urls={URL}) == ["msg_b_new"]


async def test_claim_with_a_zero_limit_claims_nothing(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    assert await claim_ids(outbox, limit=0) == []
    assert await claim_ids(outbox) == ["msg_1"]


# FIFO per (url, order) -------------------------------------------------------------------------


async def test_only_the_head_of_an_order_queue_is_claimable(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2"), new("msg_3")])
    assert await claim_ids(outbox) == ["msg_1"]


async def test_the_next_update_waits_while_the_head_is_leased(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2")])
    assert await claim_ids(outbox) == ["msg_1"]
    assert await claim_ids(outbox, now=NOW + LEASE / 2) == []


async def test_the_next_update_waits_while_the_head_waits_for_a_retry(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2")])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    await outbox.finish([outcome(claim, "retry", status_code=500, next_attempt_at=NOW + 60)])
    assert await claim_ids(outbox, now=NOW + 30) == []
    assert await claim_ids(outbox, now=NOW + 60) == ["msg_1"]


async def test_the_next_update_is_claimable_once_the_head_is_delivered(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2"), new("msg_3")])
    await settle(outbox, await claim_ids(outbox), "delivered")
    assert await claim_ids(outbox) == ["msg_2"]
    await settle(outbox, ["msg_2"], "delivered")
    assert await claim_ids(outbox) == ["msg_3"]


async def test_queues_of_different_orders_go_in_parallel(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1", order_id="a"), new("msg_2", order_id="a")])
    await outbox.enqueue([new("msg_3", order_id="b")])
    assert await claim_ids(outbox) == ["msg_1", "msg_3"]


async def test_queues_of_one_order_to_different_urls_go_in_parallel(outbox: Store) -> None:
    await outbox.enqueue(
        [new("msg_1", url=URL), new("msg_2", url=PARTNER_URL, target=Target.PARTNER)]
    )
    await outbox.enqueue([new("msg_3", url=URL)])
    assert await claim_ids(outbox) == ["msg_1", "msg_2"]


async def test_an_update_enqueued_behind_a_delivered_one_is_a_head(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    await settle(outbox, await claim_ids(outbox), "delivered")
    await outbox.enqueue([new("msg_2")])
    assert await claim_ids(outbox) == ["msg_2"]


# Leases and release ---------------------------------------------------------------------------


async def test_a_leased_delivery_is_not_claimed_twice(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    assert await claim_ids(outbox) == ["msg_1"]
    assert await claim_ids(outbox, now=NOW + LEASE - 1) == []


async def test_an_expired_lease_makes_the_delivery_claimable_again_with_the_same_id(
    outbox: Store,
) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2")])
    assert await claim_ids(outbox) == ["msg_1"]
    assert await claim_ids(outbox, now=NOW + LEASE) == ["msg_1"]


async def test_release_gives_a_claimed_delivery_back_unattempted(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    await claim_ids(outbox)
    await outbox.release(["msg_1"])
    [claim] = await outbox.claim(limit=10, now=NOW + 1, lease=LEASE)
    assert (claim.id, claim.attempts) == ("msg_1", 0)
    assert await outbox.get_attempts("msg_1") == []


async def test_release_leaves_finished_deliveries_alone(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    await settle(outbox, await claim_ids(outbox), "delivered")
    await outbox.release(["msg_1", "msg_unknown"])
    delivery = await outbox.get_delivery("msg_1")
    assert delivery is not None and delivery.status is DeliveryStatus.DELIVERED


# Renewal (the dispatcher's heartbeat) ---------------------------------------------------------


async def test_a_renewed_lease_keeps_the_delivery_from_other_claims_until_its_new_end(
    outbox: Store,
) -> None:
    await outbox.enqueue([new("msg_1")])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    first = NOW + 20.123456789  # a clock's fraction of a second, as a real renewal has
    second = NOW + 40.987654321
    assert await outbox.renew([(claim.id, claim.lease_until)], until=first) == ["msg_1"]
    assert await outbox.renew([(claim.id, first)], until=second) == ["msg_1"]
    assert await claim_ids(outbox, now=second - 0.001) == []
    assert await claim_ids(outbox, now=second) == ["msg_1"]


async def test_a_lease_another_node_took_after_it_ran_out_is_not_renewed(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    [ours] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    [theirs] = await outbox.claim(limit=10, now=NOW + LEASE + 1, lease=LEASE)
    assert await outbox.renew([(ours.id, ours.lease_until)], until=NOW + 3 * LEASE) == []
    assert await claim_ids(outbox, now=theirs.lease_until - 0.001) == []
    assert await claim_ids(outbox, now=theirs.lease_until) == ["msg_1"]


async def test_a_lease_that_ran_out_and_was_not_taken_is_renewed(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    until = NOW + 2 * LEASE
    assert await outbox.renew([(claim.id, claim.lease_until)], until=until) == ["msg_1"]
    assert await claim_ids(outbox, now=NOW + LEASE + 1) == []


async def test_a_finished_released_or_replayed_delivery_is_not_renewed(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1", order_id="o1"), new("msg_2", order_id="o2")])
    await outbox.enqueue([new("msg_3", order_id="o3")])
    claims = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    await settle(outbox, ["msg_1"], "delivered")
    await outbox.release(["msg_2"])
    await outbox.replay(DeliveryQuery(ids=["msg_3"]), now=NOW + LEASE)  # its lease ran out
    held = [(claim.id, claim.lease_until) for claim in claims]
    assert await outbox.renew(held, until=NOW + 2 * LEASE) == []


async def test_renewing_many_leases_renews_each_held_one(outbox: Store) -> None:
    await outbox.enqueue([new(f"msg_{n}", order_id=f"o{n}") for n in range(50)])
    claims = await outbox.claim(limit=100, now=NOW + 0.5, lease=LEASE)
    held = [(claim.id, claim.lease_until) for claim in claims]
    held.append(("msg_unknown", NOW + LEASE))
    renewed = await outbox.renew(held, until=NOW + 2 * LEASE)
    assert sorted(renewed) == sorted(claim.id for claim in claims)


# Finish: delivered, retry, dead ---------------------------------------------------------------


async def test_a_delivered_attempt_is_recorded_and_ends_the_delivery(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    await outbox.finish([outcome(claim, "delivered", at=NOW + 1)])
    delivery = await outbox.get_delivery("msg_1")
    assert delivery is not None
    assert delivery.status is DeliveryStatus.DELIVERED
    assert delivery.attempts == 1
    assert delivery.last_status_code == 200
    assert delivery.delivered_at == pytest.approx(NOW + 1 + 0.0125)
    assert delivery.next_attempt_at is None
    assert await claim_ids(outbox, now=NOW + 100) == []


async def test_every_attempt_is_kept_in_order(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    await claim_ids(outbox)
    retry = outcome("msg_1", "retry", status_code=503, next_attempt_at=NOW + 5)
    await outbox.finish([retry])
    await claim_ids(outbox, now=NOW + 5)
    await outbox.finish([outcome("msg_1", "delivered", at=NOW + 5, number=2)])
    attempts = await outbox.get_attempts("msg_1")
    assert [(a.number, a.status_code) for a in attempts] == [(1, 503), (2, 200)]
    assert attempts[0] == retry.attempt


async def test_a_retry_counts_the_attempt_and_waits_until_its_time(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    await outbox.finish([outcome(claim, "retry", status_code=500, next_attempt_at=NOW + 5)])
    delivery = await outbox.get_delivery("msg_1")
    assert delivery is not None
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
    assert delivery.next_attempt_at == NOW + 5
    assert (delivery.last_status_code, delivery.last_error) == (500, "HTTP 500")
    assert await claim_ids(outbox, now=NOW + 4) == []
    [again] = await outbox.claim(limit=10, now=NOW + 5, lease=LEASE)
    assert (again.attempts, again.round_attempts) == (1, 1)


async def test_a_dead_delivery_releases_the_next_one_flagged_after_dead(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2"), new("msg_3")])
    await settle(outbox, await claim_ids(outbox), "dead")
    dead = await outbox.get_delivery("msg_1")
    assert dead is not None and dead.status is DeliveryStatus.DEAD
    [successor] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    assert (successor.id, successor.after_dead) == ("msg_2", True)
    flagged = await outbox.get_delivery("msg_2")
    assert flagged is not None and flagged.after_dead
    later = await outbox.get_delivery("msg_3")
    assert later is not None and not later.after_dead


async def test_a_death_does_not_flag_other_queues(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1", order_id="a"), new("msg_2", order_id="b")])
    await settle(outbox, ["msg_1"], "dead")
    other = await outbox.get_delivery("msg_2")
    assert other is not None and not other.after_dead


async def test_finish_handles_several_outcomes_at_once(outbox: Store) -> None:
    await outbox.enqueue([new(f"msg_{i}", order_id=f"o{i}") for i in range(3)])
    claims = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    await outbox.finish(
        [
            outcome(claims[0], "delivered"),
            outcome(claims[1], "retry", status_code=500, next_attempt_at=NOW + 1),
            outcome(claims[2], "dead", status_code=500),
        ]
    )
    assert await outbox.counts() == {
        DeliveryStatus.PENDING: 1,
        DeliveryStatus.DELIVERED: 1,
        DeliveryStatus.DEAD: 1,
    }


# Replay ---------------------------------------------------------------------------------------


async def test_replaying_a_dead_delivery_starts_a_fresh_round(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    await claim_ids(outbox)
    await outbox.finish([outcome("msg_1", "retry", status_code=500, next_attempt_at=NOW)])
    await claim_ids(outbox)
    await outbox.finish([outcome("msg_1", "dead", status_code=500, number=2)])
    assert await outbox.replay(DeliveryQuery(ids=["msg_1"]), now=NOW + 100) == ["msg_1"]
    delivery = await outbox.get_delivery("msg_1")
    assert delivery is not None
    assert (delivery.status, delivery.next_attempt_at) == (DeliveryStatus.PENDING, NOW + 100)
    [claim] = await outbox.claim(limit=10, now=NOW + 100, lease=LEASE)
    assert (claim.id, claim.attempts, claim.round_attempts) == ("msg_1", 2, 0)


async def test_replaying_a_delivered_delivery_sends_it_again(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    await settle(outbox, await claim_ids(outbox), "delivered")
    await outbox.replay(DeliveryQuery(ids=["msg_1"]), now=NOW + 1)
    assert await claim_ids(outbox, now=NOW + 1) == ["msg_1"]


async def test_replayed_updates_of_one_order_go_again_in_their_order(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2")])
    await settle(outbox, await claim_ids(outbox), "delivered")
    await settle(outbox, await claim_ids(outbox), "delivered")
    replayed = await outbox.replay(DeliveryQuery(order_id="order-1"), now=NOW + 1)
    assert sorted(replayed) == ["msg_1", "msg_2"]
    assert await claim_ids(outbox, now=NOW + 1) == ["msg_1"]
    await settle(outbox, ["msg_1"], "delivered")
    assert await claim_ids(outbox, now=NOW + 1) == ["msg_2"]


async def test_a_replayed_earlier_update_goes_before_a_waiting_later_one(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    await settle(outbox, await claim_ids(outbox), "dead")
    await outbox.enqueue([new("msg_2")])
    await outbox.replay(DeliveryQuery(ids=["msg_1"]), now=NOW + 1)
    assert await claim_ids(outbox, now=NOW + 1) == ["msg_1"]


async def test_a_later_update_finished_after_an_earlier_one_was_replayed_frees_none_behind(
    outbox: Store,
) -> None:
    await outbox.enqueue([new("msg_1")])
    await settle(outbox, await claim_ids(outbox), "delivered")
    await outbox.enqueue([new("msg_2"), new("msg_3")])
    assert await claim_ids(outbox) == ["msg_2"]
    await outbox.replay(DeliveryQuery(ids=["msg_1"]), now=NOW + 1)
    await settle(outbox, ["msg_2"], "delivered")
    assert await claim_ids(outbox, now=NOW + 1) == ["msg_1"]


async def test_replay_leaves_a_delivery_that_is_being_sent_alone(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    await claim_ids(outbox)
    assert await outbox.replay(DeliveryQuery(ids=["msg_1"]), now=NOW + 1) == []
    assert await claim_ids(outbox, now=NOW + 1) == []


async def test_replay_by_filter_takes_only_matching_deliveries(outbox: Store) -> None:
    await outbox.enqueue([new(f"msg_{i}", order_id=f"o{i}") for i in range(4)])
    await settle(outbox, ["msg_0", "msg_1"], "dead")
    await settle(outbox, ["msg_2"], "delivered")
    replayed = await outbox.replay(DeliveryQuery(status=DeliveryStatus.DEAD), now=NOW + 1)
    assert sorted(replayed) == ["msg_0", "msg_1"]
    assert await outbox.counts() == {
        DeliveryStatus.PENDING: 3,
        DeliveryStatus.DELIVERED: 1,
        DeliveryStatus.DEAD: 0,
    }


async def test_replay_respects_the_client_filter(outbox: Store) -> None:
    await outbox.enqueue([new("msg_mine"), new("msg_theirs", token=OTHER_TOKEN, url=OTHER_URL)])
    await settle(outbox, ["msg_mine", "msg_theirs"], "dead")
    query = DeliveryQuery(dhan_client_id=OTHER_TOKEN.dhan_client_id, status=DeliveryStatus.DEAD)
    assert await outbox.replay(query, now=NOW + 1) == ["msg_theirs"]


# next_due -------------------------------------------------------------------------------------


async def test_next_due_is_none_when_nothing_is_pending(outbox: Store) -> None:
    assert await outbox.next_due() is None


async def test_next_due_is_the_earliest_due_head(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1", order_id="a", created_at=NOW + 7)])
    await outbox.enqueue([new("msg_2", order_id="b", created_at=NOW + 3)])
    assert await outbox.next_due() == NOW + 3


async def test_next_due_ignores_updates_waiting_behind_their_head(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2")])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    await outbox.finish([outcome(claim, "retry", status_code=500, next_attempt_at=NOW + 60)])
    assert await outbox.next_due() == NOW + 60


async def test_next_due_is_the_lease_end_of_a_leased_head(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    await claim_ids(outbox)
    assert await outbox.next_due() == NOW + LEASE


# Delivery log ---------------------------------------------------------------------------------


async def test_get_delivery_shows_what_was_enqueued(outbox: Store) -> None:
    delivery = new("msg_1", target=Target.PARTNER, url=PARTNER_URL)
    await outbox.enqueue([delivery])
    stored = await outbox.get_delivery("msg_1")
    assert stored is not None
    assert (stored.id, stored.dhan_client_id, stored.token_hash) == (
        "msg_1",
        TOKEN.dhan_client_id,
        TOKEN.token_hash,
    )
    assert (stored.target, stored.partner_id, stored.url) == (
        Target.PARTNER,
        "acme",
        PARTNER_URL,
    )
    assert (stored.order_id, stored.payload, stored.created_at) == (
        "order-1",
        delivery.payload,
        NOW,
    )
    assert (stored.status, stored.attempts, stored.next_attempt_at) == (
        DeliveryStatus.PENDING,
        0,
        NOW,
    )


async def test_an_unknown_delivery_is_none_with_no_attempts(outbox: Store) -> None:
    assert await outbox.get_delivery("msg_nope") is None
    assert await outbox.get_attempts("msg_nope") == []


async def test_list_is_newest_first_by_default(outbox: Store) -> None:
    await outbox.enqueue([new(f"msg_{i}", order_id=f"o{i}") for i in range(3)])
    listed = await outbox.list_deliveries(DeliveryQuery())
    assert [d.id for d in listed] == ["msg_2", "msg_1", "msg_0"]


async def test_list_filters_by_status_order_client_and_target(outbox: Store) -> None:
    await outbox.enqueue(
        [
            new("msg_a", order_id="o1"),
            new("msg_b", order_id="o2"),
            new("msg_c", order_id="o1", url=PARTNER_URL, target=Target.PARTNER),
            new("msg_d", order_id="o1", token=OTHER_TOKEN, url=OTHER_URL),
        ]
    )
    await settle(outbox, ["msg_b"], "delivered")

    async def ids(**filters: object) -> list[str]:
        listed = await outbox.list_deliveries(DeliveryQuery(**filters))  # type: ignore[arg-type]
        return sorted(d.id for d in listed)

    assert await ids(status=DeliveryStatus.DELIVERED) == ["msg_b"]
    assert await ids(order_id="o1") == ["msg_a", "msg_c", "msg_d"]
    assert await ids(dhan_client_id=TOKEN.dhan_client_id) == ["msg_a", "msg_b", "msg_c"]
    assert await ids(dhan_client_id=TOKEN.dhan_client_id, target=Target.TOKEN) == [
        "msg_a",
        "msg_b",
    ]
    assert await ids(partner_id="acme") == ["msg_c"]
    assert await ids(ids=["msg_a", "msg_d", "msg_zz"]) == ["msg_a", "msg_d"]
    assert await ids(status=DeliveryStatus.DEAD) == []


async def test_list_filters_by_creation_time_since_inclusive_until_exclusive(
    outbox: Store,
) -> None:
    await outbox.enqueue([new(f"msg_{i}", order_id=f"o{i}", created_at=NOW + i) for i in range(5)])
    listed = await outbox.list_deliveries(DeliveryQuery(since=NOW + 1, until=NOW + 3))
    assert [d.id for d in listed] == ["msg_2", "msg_1"]


@pytest.mark.parametrize("newest_first", [True, False])
async def test_cursor_paging_visits_every_delivery_once(outbox: Store, newest_first: bool) -> None:
    await outbox.enqueue([new(f"msg_{i:02}", order_id=f"o{i}") for i in range(7)])
    seen: list[str] = []
    cursor: int | None = None
    pages = 0
    while True:
        query = DeliveryQuery(limit=3, cursor=cursor, newest_first=newest_first)
        page = await outbox.list_deliveries(query)
        if not page:
            break
        pages += 1
        seen += [d.id for d in page]
        cursor = page[-1].seq
    expected = [f"msg_{i:02}" for i in range(7)]
    assert seen == (expected[::-1] if newest_first else expected)
    assert pages == 3


async def test_cursor_paging_keeps_the_filters(outbox: Store) -> None:
    await outbox.enqueue([new(f"msg_{i}", order_id="a" if i % 2 else "b") for i in range(6)])
    first = await outbox.list_deliveries(DeliveryQuery(order_id="a", limit=2))
    rest = await outbox.list_deliveries(DeliveryQuery(order_id="a", limit=10, cursor=first[-1].seq))
    assert [d.id for d in first + rest] == ["msg_5", "msg_3", "msg_1"]


async def test_counts_every_status(outbox: Store) -> None:
    await outbox.enqueue([new(f"msg_{i}", order_id=f"o{i}") for i in range(5)])
    await settle(outbox, ["msg_0", "msg_1"], "delivered")
    await settle(outbox, ["msg_2"], "dead")
    assert await outbox.counts() == {
        DeliveryStatus.PENDING: 2,
        DeliveryStatus.DELIVERED: 2,
        DeliveryStatus.DEAD: 1,
    }


# Registry -------------------------------------------------------------------------------------


async def test_a_token_is_stored_and_found_by_its_hash(store: Store) -> None:
    await store.add_token(OTHER_TOKEN)
    assert without_endpoint(await store.get_token(OTHER_TOKEN.token_hash)) == OTHER_TOKEN
    assert await store.get_token("c" * 64) is None


async def test_adding_a_token_twice_is_a_conflict(store: Store) -> None:
    await store.add_token(OTHER_TOKEN)
    with pytest.raises(Conflict):
        await store.add_token(OTHER_TOKEN)


async def test_revoking_keeps_the_first_revocation_time(store: Store) -> None:
    await store.add_token(OTHER_TOKEN)
    assert await store.revoke_token(OTHER_TOKEN.token_hash, NOW)
    assert await store.revoke_token(OTHER_TOKEN.token_hash, NOW + 5)
    stored = await store.get_token(OTHER_TOKEN.token_hash)
    assert stored is not None
    assert stored.revoked_at == NOW
    assert not stored.is_active(NOW + 1)


async def test_revoking_an_unknown_token_says_so(store: Store) -> None:
    assert not await store.revoke_token("d" * 64, NOW)


async def test_the_tokens_revoked_since_a_time_are_listed_by_hash(store: Store) -> None:
    await store.add_token(TOKEN)
    await store.add_token(OTHER_TOKEN)
    await store.add_token(dataclasses.replace(OTHER_TOKEN, token_hash="e" * 64))
    await store.revoke_token(TOKEN.token_hash, NOW - 10)
    await store.revoke_token(OTHER_TOKEN.token_hash, NOW)
    assert await store.revoked_since(NOW) == [OTHER_TOKEN.token_hash]
    assert sorted(await store.revoked_since(NOW - 10)) == [TOKEN.token_hash, OTHER_TOKEN.token_hash]
    assert await store.revoked_since(NOW + 1) == []


async def test_a_revoked_tokens_deliveries_are_still_sent(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    await outbox.revoke_token(TOKEN.token_hash, NOW)
    assert await claim_ids(outbox) == ["msg_1"]


async def test_a_partner_is_created_and_replaced(store: Store) -> None:
    await store.put_partner(PARTNER)
    assert await store.get_partner("acme") == PARTNER
    moved = dataclasses.replace(PARTNER, postback_url=OTHER_URL)
    await store.put_partner(moved)
    assert await store.get_partner("acme") == moved
    assert await store.get_partner("nobody") is None


async def test_a_claim_is_signed_with_the_clients_endpoint_secret_for_the_tokens_url(
    outbox: Store,
) -> None:
    await outbox.enqueue([new("msg_1")])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    assert claim.signing_secret == TOKEN_SECRET
    assert claim.previous_secrets == ()


async def test_a_claim_is_signed_with_the_partners_endpoint_secret_for_the_partners_url(
    outbox: Store,
) -> None:
    await outbox.enqueue([new("msg_1", url=PARTNER_URL, target=Target.PARTNER)])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    assert claim.signing_secret == PARTNER_SECRET


async def test_the_endpoints_secret_is_read_at_claim_time(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1", url=PARTNER_URL, target=Target.PARTNER)])
    [endpoint] = [e for e in await outbox.list_endpoints() if e.url == PARTNER_URL]
    await outbox.rotate_secret(endpoint.id, "whsec_cm90YXRlZA==", now=NOW, keep_until=NOW + 60)
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    assert claim.signing_secret == "whsec_cm90YXRlZA=="
    assert claim.previous_secrets == (PARTNER_SECRET,)


async def test_ping_answers_when_the_store_is_up(store: Store) -> None:
    await store.ping()


# Durability -----------------------------------------------------------------------------------


async def test_everything_survives_closing_and_reopening(store_maker: StoreMaker) -> None:
    if not store_maker.durable:
        pytest.skip(f"{store_maker.backend} keeps nothing across stores")
    first = store_maker()
    await first.open()
    await register_partner(first, PARTNER, PARTNER_SECRET)
    await register_token(first, TOKEN, TOKEN_SECRET)
    await first.enqueue([new("msg_1"), new("msg_2"), new("msg_3", order_id="other")])
    [claim, _] = await first.claim(limit=10, now=NOW, lease=LEASE)
    await first.finish([outcome(claim, "delivered")])
    await first.close()

    second = store_maker()
    await second.open()
    try:
        assert without_endpoint(await second.get_token(TOKEN.token_hash)) == TOKEN
        assert await second.get_partner("acme") == PARTNER
        assert [a.status_code for a in await second.get_attempts("msg_1")] == [200]
        assert await second.counts() == {
            DeliveryStatus.PENDING: 2,
            DeliveryStatus.DELIVERED: 1,
            DeliveryStatus.DEAD: 0,
        }
        # msg_3 was claimed by the first store and never finished: its lease runs out.
        assert await claim_ids(second, now=NOW + 1) == ["msg_2"]
        assert await claim_ids(second, now=NOW + LEASE) == ["msg_3"]
    finally:
        await second.close()


async def test_concurrent_enqueues_all_commit_and_a_conflict_fails_alone(outbox: Store) -> None:
    await outbox.enqueue([new("msg_taken")])
    results = await asyncio.gather(
        *(outbox.enqueue([new(f"msg_{i}", order_id=f"o{i}")]) for i in range(20)),
        outbox.enqueue([new("msg_taken")]),
        return_exceptions=True,
    )
    assert results[:20] == [None] * 20
    assert isinstance(results[20], Conflict)
    assert (await outbox.counts())[DeliveryStatus.PENDING] == 21


async def test_concurrent_batches_all_commit(outbox: Store) -> None:
    async def writer(name: str) -> None:
        for round_ in range(5):
            await outbox.enqueue(
                [new(f"msg_{name}_{round_}_{i}", order_id=f"{name}{i}") for i in range(200)]
            )

    await asyncio.gather(*(writer(name) for name in "abcd"))
    assert (await outbox.counts())[DeliveryStatus.PENDING] == 4 * 5 * 200
    heads = await outbox.claim(limit=10_000, now=NOW, lease=LEASE)
    assert len(heads) == 4 * 200  # one head per order, the rest wait behind it


# Idempotent enqueue ---------------------------------------------------------------------------

WINDOW = 86400.0


def key_record(
    key: str = "key-1", *, token: TokenRecord = TOKEN, at: float = NOW
) -> IdempotencyRecord:
    return IdempotencyRecord(
        dhan_client_id=token.dhan_client_id,
        key=key,
        request_hash="h" * 64,
        status=202,
        response=b'{"deliveryIds":["msg_1"]}',
        created_at=at,
    )


async def test_enqueue_once_commits_the_deliveries_and_the_key(outbox: Store) -> None:
    stored = await outbox.enqueue_once([new("msg_1")], key_record(), fresh_after=NOW - WINDOW)
    assert stored is None
    assert await claim_ids(outbox) == ["msg_1"]


async def test_enqueue_once_with_a_fresh_key_returns_its_first_record_and_stores_nothing(
    outbox: Store,
) -> None:
    first = key_record()
    await outbox.enqueue_once([new("msg_1")], first, fresh_after=NOW - WINDOW)
    again = dataclasses.replace(first, request_hash="other", created_at=NOW + 5)
    earlier = await outbox.enqueue_once([new("msg_2")], again, fresh_after=NOW + 5 - WINDOW)
    assert earlier == first
    assert await outbox.get_delivery("msg_2") is None
    assert (await outbox.counts())[DeliveryStatus.PENDING] == 1


async def test_idempotency_keys_are_scoped_to_the_client(outbox: Store) -> None:
    await outbox.enqueue_once([new("msg_1")], key_record(), fresh_after=NOW - WINDOW)
    other = key_record(token=OTHER_TOKEN)
    stored = await outbox.enqueue_once(
        [new("msg_2", token=OTHER_TOKEN, url=OTHER_URL)], other, fresh_after=NOW - WINDOW
    )
    assert stored is None
    assert await outbox.get_delivery("msg_2") is not None


async def test_a_key_older_than_the_window_is_new_again(outbox: Store) -> None:
    await outbox.enqueue_once([new("msg_1")], key_record(at=NOW), fresh_after=NOW - WINDOW)
    later = key_record(at=NOW + WINDOW + 1)
    stored = await outbox.enqueue_once([new("msg_2")], later, fresh_after=NOW + 1)
    assert stored is None
    assert await outbox.get_delivery("msg_2") is not None
    # and the renewed key answers from its new record
    third = key_record(at=NOW + WINDOW + 2)
    assert await outbox.enqueue_once([new("msg_3")], third, fresh_after=NOW + 2) == later


async def test_a_key_without_deliveries_is_still_kept(outbox: Store) -> None:
    first = key_record()
    assert await outbox.enqueue_once([], first, fresh_after=NOW - WINDOW) is None
    assert await outbox.enqueue_once([new("msg_1")], first, fresh_after=NOW - WINDOW) == first


async def test_idempotency_keys_survive_reopening(store_maker: StoreMaker) -> None:
    if not store_maker.durable:
        pytest.skip(f"{store_maker.backend} keeps nothing across stores")
    first = store_maker()
    await first.open()
    await first.add_token(TOKEN)
    await first.enqueue_once([new("msg_1")], key_record(), fresh_after=NOW - WINDOW)
    await first.close()
    second = store_maker()
    await second.open()
    try:
        earlier = await second.enqueue_once([new("msg_2")], key_record(), fresh_after=NOW - 1)
        assert earlier == key_record()
        assert await second.get_delivery("msg_2") is None
    finally:
        await second.close()


async def test_concurrent_enqueue_once_with_one_key_on_two_stores_commits_one(
    store_maker: StoreMaker,
) -> None:
    """Two nodes (two stores on one database) get the same request at once."""
    if not store_maker.durable:
        pytest.skip(f"{store_maker.backend} is one process's memory")
    nodes = [store_maker(), store_maker()]
    for node in nodes:
        await node.open()
    try:
        await nodes[0].add_token(TOKEN)
        for round_ in range(10):
            key = f"key-{round_}"
            results = await asyncio.gather(
                *(
                    node.enqueue_once(
                        [new(f"msg_{round_}_{i}", order_id=f"o{round_}")],
                        key_record(key),
                        fresh_after=NOW - WINDOW,
                    )
                    for i, node in enumerate(nodes)
                )
            )
            assert sorted(results, key=lambda r: r is not None) == [None, key_record(key)]
        assert (await nodes[0].counts())[DeliveryStatus.PENDING] == 10
    finally:
        for node in nodes:
            await node.close()


# Retention ------------------------------------------------------------------------------------

DAY = 86400.0


async def prune(
    store: Store,
    *,
    delivered_before: float = NOW + DAY,
    dead_before: float = NOW + DAY,
    keys_before: float = NOW - DAY,
    limit: int = 100,
) -> PruneResult:
    return await store.prune(
        delivered_before=delivered_before,
        dead_before=dead_before,
        keys_before=keys_before,
        limit=limit,
    )


async def test_prune_deletes_delivered_deliveries_and_their_attempts(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2", order_id="o2")])
    await settle(outbox, await claim_ids(outbox), "delivered")
    assert await prune(outbox) == PruneResult(delivered=2, attempts=2)
    assert await outbox.get_delivery("msg_1") is None
    assert await outbox.get_attempts("msg_1") == []
    assert await outbox.counts() == dict.fromkeys(DeliveryStatus, 0)


async def test_prune_keeps_deliveries_younger_than_their_retention(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2", order_id="o2")])
    [first, second] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    await outbox.finish([outcome(first, "delivered", at=NOW)])
    await outbox.finish([outcome(second, "dead", at=NOW + 100, status_code=500)])
    # delivered at NOW (+12.5 ms latency); the dead one's last attempt was due at NOW
    assert await prune(outbox, delivered_before=NOW, dead_before=NOW) == PruneResult()
    assert await prune(outbox, delivered_before=NOW + 1, dead_before=NOW) == PruneResult(
        delivered=1, attempts=1
    )
    assert await prune(outbox, delivered_before=NOW + 1, dead_before=NOW + 1) == PruneResult(
        dead=1, attempts=1
    )


async def test_prune_never_deletes_a_pending_delivery(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1", created_at=NOW - 100 * DAY)])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    await outbox.finish([outcome(claim, "retry", status_code=500, next_attempt_at=NOW - DAY)])
    assert await prune(outbox, delivered_before=NOW + DAY, dead_before=NOW + DAY) == PruneResult()
    assert (await outbox.get_delivery("msg_1")) is not None


async def test_prune_deletes_at_most_its_limit_oldest_first(outbox: Store) -> None:
    await outbox.enqueue([new(f"msg_{i}", order_id=f"o{i}") for i in range(5)])
    claims = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    for number, claim in enumerate(claims):
        await outbox.finish([outcome(claim, "delivered", at=NOW + number)])
    assert (await prune(outbox, limit=2)).delivered == 2
    assert await outbox.get_delivery("msg_1") is None
    assert await outbox.get_delivery("msg_2") is not None
    assert (await prune(outbox, limit=2)).delivered == 2
    assert (await prune(outbox, limit=2)).delivered == 1


async def test_prune_fills_its_limit_with_delivered_deliveries_before_dead_ones(
    outbox: Store,
) -> None:
    await outbox.enqueue([new(f"msg_{i}", order_id=f"o{i}") for i in range(4)])
    claims = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    await outbox.finish([outcome(claim, "dead", status_code=500) for claim in claims[:2]])
    await outbox.finish([outcome(claim, "delivered") for claim in claims[2:]])
    assert await prune(outbox, limit=3) == PruneResult(delivered=2, dead=1, attempts=3)
    assert await prune(outbox, limit=3) == PruneResult(dead=1, attempts=1)


async def test_pruning_a_dead_head_keeps_its_successor_next_and_flagged(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1"), new("msg_2"), new("msg_3")])
    [head] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    await outbox.finish([outcome(head, "dead", status_code=500)])
    assert (await prune(outbox)).dead == 1
    [successor] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    assert (successor.id, successor.after_dead) == ("msg_2", True)
    await outbox.finish([outcome(successor, "delivered")])
    assert (await prune(outbox)).delivered == 1
    # the queue goes on in order, and what joins it later waits behind what is pending
    await outbox.enqueue([new("msg_4")])
    [third] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    assert (third.id, third.after_dead) == ("msg_3", False)
    await outbox.finish([outcome(third, "delivered")])
    assert await claim_ids(outbox) == ["msg_4"]


async def test_a_pruned_delivery_is_not_replayed(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    await settle(outbox, await claim_ids(outbox), "delivered")
    await prune(outbox)
    assert await outbox.replay(DeliveryQuery(ids=["msg_1"]), now=NOW) == []
    assert await outbox.replay(DeliveryQuery(status=DeliveryStatus.DELIVERED), now=NOW) == []


async def test_a_late_finish_of_a_pruned_delivery_records_nothing(outbox: Store) -> None:
    """A node whose lease ran out reports after another node delivered it and it was pruned."""
    await outbox.enqueue([new("msg_1")])
    [claim] = await outbox.claim(limit=10, now=NOW, lease=LEASE)
    [again] = await outbox.claim(limit=10, now=NOW + LEASE, lease=LEASE)
    await outbox.finish([outcome(again, "delivered")])
    await prune(outbox)
    await outbox.finish([outcome(claim, "delivered", number=1)])
    assert await outbox.get_delivery("msg_1") is None
    assert await outbox.get_attempts("msg_1") == []
    assert (await prune(outbox)).attempts == 0


async def test_prune_deletes_expired_idempotency_keys(outbox: Store) -> None:
    await outbox.enqueue_once([new("msg_1")], key_record(at=NOW), fresh_after=NOW - WINDOW)
    await outbox.enqueue_once([new("msg_2")], key_record("key-2", at=NOW + 10), fresh_after=0)
    assert (await prune(outbox, keys_before=NOW + 5)).idempotency_keys == 1
    # the pruned key is new again; the other is still answered (whatever fresh_after says)
    assert await outbox.enqueue_once([new("msg_3")], key_record(), fresh_after=0) is None
    assert await outbox.get_delivery("msg_3") is not None
    earlier = await outbox.enqueue_once([new("msg_4")], key_record("key-2"), fresh_after=0)
    assert earlier is not None


async def test_a_replayed_delivery_is_pending_again_and_not_pruned(outbox: Store) -> None:
    await outbox.enqueue([new("msg_1")])
    await settle(outbox, await claim_ids(outbox), "delivered")
    assert await outbox.replay(DeliveryQuery(ids=["msg_1"]), now=NOW + 1) == ["msg_1"]
    assert await prune(outbox) == PruneResult()
    assert await claim_ids(outbox, now=NOW + 1) == ["msg_1"]
