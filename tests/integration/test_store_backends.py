"""The store contract, run on the in-memory reference and on PostgreSQL.

(Interim: folds into tests/integration/test_store_contract.py once that lands on main.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dhan_postback.errors import Conflict
from dhan_postback.service.store import (
    DeliveryQuery,
    DeliveryStatus,
    PartnerRecord,
    Store,
    Target,
    TokenRecord,
)
from dhan_postback.service.store.memory import MemoryStore

from ..store_support import (
    CLIENT,
    NOW,
    PARTNER,
    PARTNER_SECRET,
    TOKEN_HASH,
    TOKEN_SECRET,
    URL,
    dead,
    delivered,
    delivery,
    retry,
    seed_registry,
)

LEASE = 30.0
OTHER_URL = "https://other.example/postback"


@pytest.fixture(params=["memory", "postgres"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        backend: Store = MemoryStore()
    else:
        from dhan_postback.service.store.postgres import PostgresStore

        backend = PostgresStore(request.getfixturevalue("pg_url"))
    await backend.open()
    await seed_registry(backend)
    try:
        yield backend
    finally:
        await backend.close()


async def claim_ids(store: Store, now: float = NOW, limit: int = 100) -> list[str]:
    """The ids of what one claim leases."""
    return [claim.id for claim in await store.claim(limit=limit, now=now, lease=LEASE)]


# Registry ---------------------------------------------------------------------------------


async def test_a_token_reads_back_as_added(store: Store) -> None:
    token = await store.get_token(TOKEN_HASH)
    assert token is not None
    assert (token.dhan_client_id, token.postback_url, token.partner_id) == (CLIENT, URL, PARTNER)
    assert token.signing_secret == TOKEN_SECRET
    assert token.revoked_at is None


async def test_an_unknown_token_is_none(store: Store) -> None:
    assert await store.get_token("b" * 64) is None


async def test_adding_a_token_twice_conflicts(store: Store) -> None:
    token = await store.get_token(TOKEN_HASH)
    assert token is not None
    with pytest.raises(Conflict):
        await store.add_token(token)


async def test_revoking_keeps_the_first_revocation_time(store: Store) -> None:
    assert await store.revoke_token(TOKEN_HASH, NOW + 1) is True
    assert await store.revoke_token(TOKEN_HASH, NOW + 2) is True
    token = await store.get_token(TOKEN_HASH)
    assert token is not None and token.revoked_at == NOW + 1
    assert not token.is_active(NOW + 3)


async def test_revoking_an_unknown_token_says_so(store: Store) -> None:
    assert await store.revoke_token("c" * 64, NOW) is False


async def test_putting_a_partner_again_replaces_it(store: Store) -> None:
    await store.put_partner(PartnerRecord(PARTNER, "https://new.example/", "whsec_bmV3", NOW))
    partner = await store.get_partner(PARTNER)
    assert partner == PartnerRecord(PARTNER, "https://new.example/", "whsec_bmV3", NOW)
    assert await store.get_partner("nobody") is None


async def test_a_token_without_url_or_partner_reads_back_with_nones(store: Store) -> None:
    bare = TokenRecord("d" * 64, "1000000002", None, None, "whsec_eA==", NOW, NOW + 10)
    await store.add_token(bare)
    assert await store.get_token("d" * 64) == bare


# Enqueue ----------------------------------------------------------------------------------


async def test_enqueued_deliveries_are_pending_in_the_given_order(store: Store) -> None:
    first, second = delivery("O1"), delivery("O2")
    await store.enqueue([first, second])
    one, two = await store.get_delivery(first.id), await store.get_delivery(second.id)
    assert one is not None and two is not None
    assert one.seq < two.seq
    assert one.status is DeliveryStatus.PENDING
    assert one.next_attempt_at == first.created_at
    assert (one.payload, one.url, one.order_id, one.attempts) == (first.payload, URL, "O1", 0)


async def test_enqueueing_an_existing_id_conflicts_and_adds_nothing(store: Store) -> None:
    existing = delivery()
    await store.enqueue([existing])
    fresh = delivery("O2")
    with pytest.raises(Conflict):
        await store.enqueue([fresh, existing])
    assert await store.get_delivery(fresh.id) is None


async def test_enqueueing_nothing_is_fine(store: Store) -> None:
    await store.enqueue([])
    assert await store.counts() == dict.fromkeys(DeliveryStatus, 0)


# Claim ------------------------------------------------------------------------------------


async def test_only_the_head_of_an_orders_queue_is_claimed(store: Store) -> None:
    first, second = delivery("O1"), delivery("O1")
    await store.enqueue([first, second])
    assert await claim_ids(store) == [first.id]
    assert await claim_ids(store) == []


async def test_different_orders_are_claimed_together(store: Store) -> None:
    batch = [delivery("O1"), delivery("O2"), delivery("O3")]
    await store.enqueue(batch)
    assert await claim_ids(store) == [d.id for d in batch]


async def test_the_same_order_to_two_urls_makes_two_queues(store: Store) -> None:
    mine, partners = delivery("O1"), delivery("O1", url=OTHER_URL)
    await store.enqueue([mine, partners])
    assert sorted(await claim_ids(store)) == sorted([mine.id, partners.id])


async def test_claim_takes_at_most_limit_oldest_due_first(store: Store) -> None:
    late, early = delivery("O1", created_at=NOW - 1), delivery("O2", created_at=NOW - 5)
    await store.enqueue([late, early])
    assert await claim_ids(store, limit=1) == [early.id]


async def test_a_claim_carries_what_the_dispatcher_needs(store: Store) -> None:
    new = delivery("O1")
    await store.enqueue([new])
    [claim] = await store.claim(limit=10, now=NOW, lease=LEASE)
    assert (claim.id, claim.url, claim.order_id, claim.payload) == (new.id, URL, "O1", new.payload)
    assert claim.signing_secret == TOKEN_SECRET
    assert (claim.attempts, claim.round_attempts, claim.after_dead) == (0, 0, False)
    assert claim.lease_until == NOW + LEASE


async def test_a_partner_delivery_is_signed_with_the_partners_secret(store: Store) -> None:
    await store.enqueue([delivery("O1", target=Target.PARTNER)])
    [claim] = await store.claim(limit=10, now=NOW, lease=LEASE)
    assert claim.signing_secret == PARTNER_SECRET


async def test_a_leased_delivery_is_not_claimed_again(store: Store) -> None:
    await store.enqueue([delivery()])
    assert len(await claim_ids(store)) == 1
    assert await claim_ids(store, NOW + LEASE - 1) == []


async def test_an_expired_lease_makes_the_same_delivery_claimable(store: Store) -> None:
    new = delivery()
    await store.enqueue([new])
    await claim_ids(store)
    assert await claim_ids(store, NOW + LEASE) == [new.id]


async def test_claim_skips_the_urls_it_is_told_to(store: Store) -> None:
    mine, other = delivery("O1"), delivery("O2", url=OTHER_URL)
    await store.enqueue([mine, other])
    claims = await store.claim(limit=10, now=NOW, lease=LEASE, skip_urls={URL})
    assert [claim.id for claim in claims] == [other.id]


async def test_a_delivery_created_in_the_future_is_not_due(store: Store) -> None:
    await store.enqueue([delivery(created_at=NOW + 10)])
    assert await claim_ids(store) == []
    assert len(await claim_ids(store, NOW + 10)) == 1


# Finish -----------------------------------------------------------------------------------


async def test_delivering_the_head_releases_the_next_update(store: Store) -> None:
    first, second = delivery("O1"), delivery("O1")
    await store.enqueue([first, second])
    [claim] = await store.claim(limit=10, now=NOW, lease=LEASE)
    await store.finish([delivered(claim)])
    assert await claim_ids(store) == [second.id]
    shown = await store.get_delivery(first.id)
    assert shown is not None and shown.status is DeliveryStatus.DELIVERED
    assert shown.delivered_at == pytest.approx(NOW + 0.0125)
    assert shown.next_attempt_at is None


async def test_a_retry_keeps_the_queue_blocked_until_it_is_due(store: Store) -> None:
    first, second = delivery("O1"), delivery("O1")
    await store.enqueue([first, second])
    [claim] = await store.claim(limit=10, now=NOW, lease=LEASE)
    await store.finish([retry(claim, next_at=NOW + 5)])
    assert await claim_ids(store, NOW + 1) == []
    [again] = await store.claim(limit=10, now=NOW + 5, lease=LEASE)
    assert (again.id, again.attempts, again.round_attempts) == (first.id, 1, 1)


async def test_a_dead_head_releases_the_next_update_flagged_after_dead(store: Store) -> None:
    first, second = delivery("O1"), delivery("O1")
    await store.enqueue([first, second])
    [claim] = await store.claim(limit=10, now=NOW, lease=LEASE)
    await store.finish([dead(claim)])
    [successor] = await store.claim(limit=10, now=NOW, lease=LEASE)
    assert successor.id == second.id and successor.after_dead
    shown = await store.get_delivery(second.id)
    assert shown is not None and shown.after_dead
    gone = await store.get_delivery(first.id)
    assert gone is not None and gone.status is DeliveryStatus.DEAD


async def test_finish_records_every_attempt_in_order(store: Store) -> None:
    new = delivery()
    await store.enqueue([new])
    [claim] = await store.claim(limit=10, now=NOW, lease=LEASE)
    await store.finish([retry(claim, next_at=NOW + 1)])
    [claim] = await store.claim(limit=10, now=NOW + 1, lease=LEASE)
    await store.finish([delivered(claim, NOW + 1)])
    attempts = await store.get_attempts(new.id)
    assert [(a.number, a.status_code, a.error) for a in attempts] == [
        (1, 503, "HTTP 503"),
        (2, 200, None),
    ]
    shown = await store.get_delivery(new.id)
    assert shown is not None
    assert (shown.attempts, shown.last_status_code, shown.last_error) == (2, 200, None)


async def test_finish_moves_a_whole_batch(store: Store) -> None:
    batch = [delivery("O1"), delivery("O2"), delivery("O3")]
    await store.enqueue(batch)
    one, two, three = await store.claim(limit=10, now=NOW, lease=LEASE)
    await store.finish([delivered(one), retry(two, next_at=NOW + 9), dead(three)])
    counts = await store.counts()
    assert counts == {
        DeliveryStatus.PENDING: 1,
        DeliveryStatus.DELIVERED: 1,
        DeliveryStatus.DEAD: 1,
    }


async def test_release_gives_a_claim_back_unattempted(store: Store) -> None:
    new = delivery()
    await store.enqueue([new])
    await claim_ids(store)
    await store.release([new.id])
    [again] = await store.claim(limit=10, now=NOW, lease=LEASE)
    assert (again.id, again.attempts) == (new.id, 0)
    assert await store.get_attempts(new.id) == []


# Next due ---------------------------------------------------------------------------------


async def test_next_due_is_none_with_nothing_pending(store: Store) -> None:
    assert await store.next_due() is None


async def test_next_due_is_the_earliest_pending_attempt(store: Store) -> None:
    await store.enqueue([delivery("O1", created_at=NOW + 7), delivery("O2", created_at=NOW + 3)])
    assert await store.next_due() == NOW + 3


async def test_next_due_is_the_lease_end_of_a_delivery_in_flight(store: Store) -> None:
    await store.enqueue([delivery()])
    await claim_ids(store)
    assert await store.next_due() == NOW + LEASE


async def test_next_due_is_the_retry_time_after_a_failure(store: Store) -> None:
    await store.enqueue([delivery()])
    [claim] = await store.claim(limit=10, now=NOW, lease=LEASE)
    await store.finish([retry(claim, next_at=NOW + 5)])
    assert await store.next_due() == NOW + 5


# Replay -----------------------------------------------------------------------------------


async def test_replay_reopens_a_dead_delivery_for_a_fresh_round(store: Store) -> None:
    new = delivery()
    await store.enqueue([new])
    [claim] = await store.claim(limit=10, now=NOW, lease=LEASE)
    await store.finish([dead(claim)])
    replayed = await store.replay(DeliveryQuery(status=DeliveryStatus.DEAD), now=NOW + 60)
    assert replayed == [new.id]
    [again] = await store.claim(limit=10, now=NOW + 60, lease=LEASE)
    assert (again.id, again.attempts, again.round_attempts) == (new.id, 1, 0)


async def test_replay_leaves_a_delivery_in_flight_alone(store: Store) -> None:
    new = delivery()
    await store.enqueue([new])
    await claim_ids(store)
    assert await store.replay(DeliveryQuery(ids=[new.id]), now=NOW + 1) == []


async def test_replay_takes_only_matching_deliveries(store: Store) -> None:
    mine, other = delivery("O1"), delivery("O2")
    await store.enqueue([mine, other])
    for claim in await store.claim(limit=10, now=NOW, lease=LEASE):
        await store.finish([delivered(claim)])
    assert await store.replay(DeliveryQuery(order_id="O2"), now=NOW + 1) == [other.id]
    assert await claim_ids(store, NOW + 1) == [other.id]


async def test_replaying_an_earlier_update_puts_it_back_at_the_head(store: Store) -> None:
    first, second = delivery("O1"), delivery("O1")
    await store.enqueue([first, second])
    [claim] = await store.claim(limit=10, now=NOW, lease=LEASE)
    await store.finish([dead(claim)])
    await store.replay(DeliveryQuery(ids=[first.id]), now=NOW)
    assert await claim_ids(store) == [first.id]


# Delivery log -----------------------------------------------------------------------------


async def test_the_log_pages_newest_first_by_cursor(store: Store) -> None:
    batch = [delivery(f"O{n}") for n in range(5)]
    await store.enqueue(batch)
    page = await store.list_deliveries(DeliveryQuery(limit=2))
    assert [d.id for d in page] == [batch[4].id, batch[3].id]
    following = await store.list_deliveries(DeliveryQuery(limit=2, cursor=page[-1].seq))
    assert [d.id for d in following] == [batch[2].id, batch[1].id]


async def test_the_log_pages_oldest_first_when_asked(store: Store) -> None:
    batch = [delivery(f"O{n}") for n in range(4)]
    await store.enqueue(batch)
    page = await store.list_deliveries(DeliveryQuery(limit=2, newest_first=False))
    following = await store.list_deliveries(
        DeliveryQuery(limit=5, newest_first=False, cursor=page[-1].seq)
    )
    assert [d.id for d in [*page, *following]] == [d.id for d in batch]


async def test_the_log_filters_by_every_field(store: Store) -> None:
    plain = delivery("O1", created_at=NOW)
    partner = delivery("O2", target=Target.PARTNER, created_at=NOW + 10)
    stranger = delivery("O3", client="1000000009", created_at=NOW + 20)
    await store.enqueue([plain, partner, stranger])

    async def ids(**filters: object) -> list[str]:
        return [d.id for d in await store.list_deliveries(DeliveryQuery(**filters))]  # type: ignore[arg-type]

    assert await ids(order_id="O2") == [partner.id]
    assert await ids(dhan_client_id="1000000009") == [stranger.id]
    assert await ids(target=Target.PARTNER) == [partner.id]
    assert await ids(partner_id=PARTNER) == [partner.id]
    assert await ids(since=NOW + 5, until=NOW + 20) == [partner.id]
    assert await ids(ids=[plain.id, stranger.id]) == [stranger.id, plain.id]
    assert await ids(status=DeliveryStatus.DELIVERED) == []


async def test_an_unknown_delivery_is_none_with_no_attempts(store: Store) -> None:
    assert await store.get_delivery("msg_nothing") is None
    assert await store.get_attempts("msg_nothing") == []


async def test_counts_cover_every_status(store: Store) -> None:
    await store.enqueue([delivery("O1"), delivery("O2")])
    assert await store.counts() == {
        DeliveryStatus.PENDING: 2,
        DeliveryStatus.DELIVERED: 0,
        DeliveryStatus.DEAD: 0,
    }
