"""What only the PostgreSQL store promises: several nodes on one database.

Each "node" here is a :class:`PostgresStore` with its own connection pool, as a separate
``dhan-postback`` process would have.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest

from dhan_postback.errors import StoreUnavailable
from dhan_postback.service.dispatcher import Dispatcher
from dhan_postback.service.registry import register_partner, register_token
from dhan_postback.service.store import (
    Claim,
    DeliveryQuery,
    DeliveryStatus,
    HandOver,
    NewDelivery,
    Outcome,
)
from dhan_postback.service.store import postgres as postgres_store
from dhan_postback.service.store.postgres import CHANNEL, PostgresStore
from dhan_postback.service.store.queries import load_queries, migrations
from tests.helpers.dispatching import fast_settings, settled
from tests.helpers.receivers import RecordingReceiver
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.waiting import eventually

from .test_store_contract import (
    NOW,
    PARTNER,
    PARTNER_SECRET,
    TOKEN,
    TOKEN_SECRET,
    URL,
    new,
    outcome,
)

pytestmark = pytest.mark.postgres

LEASE = 30.0
WAKE_TIMEOUT = 10.0
_numbers = itertools.count(1)


def delivery(order_id: str = "order-1", **options: Any) -> NewDelivery:
    """A new delivery (the contract tests' ``new``) with an id of its own."""
    return new(f"msg_pg{next(_numbers)}", order_id=order_id, **options)


def delivered(claim: Claim, at: float = NOW) -> Outcome:
    return outcome(claim, "delivered", at=at)


def dead(claim: Claim, at: float = NOW) -> Outcome:
    return outcome(claim, "dead", at=at, status_code=500)


def retry(claim: Claim, *, next_at: float) -> Outcome:
    return outcome(claim, "retry", status_code=500, next_attempt_at=next_at)


async def seed_registry(store: PostgresStore) -> None:
    await register_partner(store, PARTNER, PARTNER_SECRET)
    await register_token(store, TOKEN, TOKEN_SECRET)


async def endpoint_at(store: PostgresStore, url: str) -> None:
    """TOKEN's client gets an endpoint at ``url`` too (as if it had had a token for it)."""
    other = dataclasses.replace(TOKEN, token_hash=f"{url}-token", postback_url=url)
    await register_token(store, other, TOKEN_SECRET)


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[list[PostgresStore]]:
    """Three nodes sharing one freshly migrated database with the test registry."""
    stores = [PostgresStore(pg_url) for _ in range(3)]
    await asyncio.gather(*(store.open() for store in stores))
    await seed_registry(stores[0])
    try:
        yield stores
    finally:
        await asyncio.gather(*(store.close() for store in stores))


# Migrations -------------------------------------------------------------------------------


async def test_nodes_starting_together_migrate_the_schema_once(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(5)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        async with await psycopg.AsyncConnection.connect(pg_url) as conn:
            cur = await conn.execute("SELECT version FROM schema_version ORDER BY version")
            versions = [row[0] for row in await cur.fetchall()]
        assert versions == [version for version, _ in migrations(load_queries("postgres"))]
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_reopening_a_migrated_database_keeps_its_data(pg_url: str) -> None:
    first = PostgresStore(pg_url)
    await first.open()
    await seed_registry(first)
    await first.enqueue([made := delivery()])
    await first.close()
    again = PostgresStore(pg_url)
    await again.open()
    try:
        assert await again.get_delivery(made.id) is not None
        assert await again.schema_version() == migrations(load_queries("postgres"))[-1][0]
    finally:
        await again.close()


async def test_a_database_from_a_newer_release_is_refused(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    await store.close()
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO schema_version (version) VALUES (999)")
    with pytest.raises(StoreUnavailable, match="version 999"):
        await PostgresStore(pg_url).open()


# Availability -----------------------------------------------------------------------------


async def test_an_unreachable_database_is_unavailable_without_leaking_the_password() -> None:
    url = f"postgresql://app:s3cret-pw@127.0.0.1:{free_port()}/postback?pool_timeout=1"
    with pytest.raises(StoreUnavailable) as caught:
        await PostgresStore(url).open()
    assert "s3cret-pw" not in str(caught.value)


async def test_a_store_that_is_not_open_is_unavailable(pg_url: str) -> None:
    with pytest.raises(StoreUnavailable):
        await PostgresStore(pg_url).ping()


# Several nodes ----------------------------------------------------------------------------


async def test_nodes_claiming_at_once_get_disjoint_batches(nodes: list[PostgresStore]) -> None:
    batch = [delivery(f"O{n}") for n in range(60)]
    await nodes[0].enqueue(batch)
    results = await asyncio.gather(*(node.claim(limit=60, now=NOW, lease=LEASE) for node in nodes))
    claimed = [claim.id for claims in results for claim in claims]
    assert sorted(claimed) == sorted(d.id for d in batch)


async def test_a_late_report_from_an_expired_lease_cannot_undo_a_delivery(
    nodes: list[PostgresStore],
) -> None:
    slow, fast = nodes[0], nodes[1]
    await slow.enqueue([made := delivery()])
    [stale] = await slow.claim(limit=1, now=NOW, lease=LEASE)
    [fresh] = await fast.claim(limit=1, now=NOW + LEASE, lease=LEASE)
    await fast.finish([delivered(fresh, NOW + LEASE)])
    await slow.finish([dead(stale, NOW + LEASE + 1)])
    shown = await fast.get_delivery(made.id)
    assert shown is not None and shown.status is DeliveryStatus.DELIVERED
    assert len(await fast.get_attempts(made.id)) == 2


async def test_a_finish_batch_that_fails_changes_nothing(nodes: list[PostgresStore]) -> None:
    node = nodes[0]
    await node.enqueue([first := delivery("O1"), delivery("O2")])
    one, two = await node.claim(limit=2, now=NOW, lease=LEASE)
    broken = Outcome(delivered(two).attempt, "vanished")  # type: ignore[arg-type]
    with pytest.raises(psycopg.errors.CheckViolation):
        await node.finish([delivered(one), broken])
    shown = await node.get_delivery(first.id)
    assert shown is not None and shown.status is DeliveryStatus.PENDING
    assert await node.get_attempts(first.id) == []


async def test_fifo_per_order_holds_across_nodes_under_concurrent_enqueue_and_finish(
    nodes: list[PostgresStore], pg_url: str
) -> None:
    """Two producers and six dispatchers on three nodes race over a few busy queues.

    Checked all along: no queue ever has two deliveries in flight; each queue's deliveries
    are attempted in ``seq`` order; a watcher sees exactly one head per non-empty queue in
    every committed state. At the end every delivery has finished exactly once.
    """
    orders = [f"O{n}" for n in range(6)]
    urls = [URL, "https://other.example/postback"]
    await endpoint_at(nodes[0], urls[1])
    per_producer, producers = 300, 2
    total = per_producer * producers
    rng = random.Random(7)
    in_flight: dict[tuple[str, str], str] = {}
    last_seq: dict[tuple[str, str], int] = {}
    finished: dict[str, str] = {}
    violations: list[str] = []
    done = asyncio.Event()

    async def produce(node: PostgresStore) -> None:
        made = 0
        while made < per_producer:
            size = min(rng.randint(1, 12), per_producer - made)
            batch = [
                delivery(rng.choice(orders), url=rng.choice(urls), created_at=NOW)
                for _ in range(size)
            ]
            await node.enqueue(batch)
            made += size
            await asyncio.sleep(0)

    def check_claim(claim: Claim) -> None:
        queue = (claim.url, claim.order_id)
        if queue in in_flight:
            violations.append(f"{queue} has {in_flight[queue]} and {claim.id} in flight")
        if claim.seq < last_seq.get(queue, 0):
            violations.append(f"{queue}: seq {claim.seq} after {last_seq[queue]}")
        if claim.id in finished:
            violations.append(f"{claim.id} claimed after it finished")
        in_flight[queue] = claim.id
        last_seq[queue] = claim.seq

    async def dispatch(node: PostgresStore, seed: int) -> None:
        local = random.Random(seed)
        while not done.is_set():
            claims = await node.claim(limit=8, now=NOW, lease=LEASE)
            if not claims:
                await asyncio.sleep(0.002)
                continue
            for claim in claims:
                check_claim(claim)
            await asyncio.sleep(local.random() * 0.002)
            outcomes = []
            for claim in claims:
                in_flight.pop((claim.url, claim.order_id), None)  # before the commit frees it
                roll = local.random()
                if roll < 0.15:
                    outcomes.append(retry(claim, next_at=NOW))
                    continue
                result = dead(claim) if roll < 0.25 else delivered(claim)
                finished[claim.id] = result.result
                outcomes.append(result)
            await node.finish(outcomes)
            if len(finished) == total:
                done.set()

    async def watch_heads(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        while not done.is_set():
            cur = await conn.execute(
                """SELECT url, order_id, count(*) FILTER (WHERE is_head)
                   FROM deliveries WHERE status = 'pending'
                   GROUP BY url, order_id HAVING count(*) FILTER (WHERE is_head) <> 1"""
            )
            for url, order_id, heads in await cur.fetchall():
                violations.append(f"({url}, {order_id}) has {heads} heads")
            await asyncio.sleep(0.005)

    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as watcher:
        tasks = [
            *(produce(nodes[n % len(nodes)]) for n in range(producers)),
            *(dispatch(nodes[n % len(nodes)], n) for n in range(6)),
            watch_heads(watcher),
        ]
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)

    assert violations == []
    assert len(finished) == total
    counts = await nodes[0].counts()
    assert counts[DeliveryStatus.PENDING] == 0
    assert counts[DeliveryStatus.DELIVERED] + counts[DeliveryStatus.DEAD] == total


# Wake-ups ---------------------------------------------------------------------------------


async def test_an_enqueue_on_one_node_wakes_another(nodes: list[PostgresStore]) -> None:
    woken = asyncio.Event()
    async with nodes[1].listen_wakeups(woken.set):
        await nodes[0].enqueue([delivery()])
        await asyncio.wait_for(woken.wait(), WAKE_TIMEOUT)


async def test_finishing_a_head_wakes_the_nodes_for_the_next_update(
    nodes: list[PostgresStore],
) -> None:
    await nodes[0].enqueue([delivery("O1"), delivery("O1")])
    [claim] = await nodes[0].claim(limit=5, now=NOW, lease=LEASE)
    woken = asyncio.Event()
    async with nodes[1].listen_wakeups(woken.set):
        await nodes[0].finish([delivered(claim)])
        await asyncio.wait_for(woken.wait(), WAKE_TIMEOUT)


async def test_a_replay_wakes_the_nodes(nodes: list[PostgresStore]) -> None:
    await nodes[0].enqueue([made := delivery()])
    [claim] = await nodes[0].claim(limit=5, now=NOW, lease=LEASE)
    await nodes[0].finish([dead(claim)])
    woken = asyncio.Event()
    async with nodes[1].listen_wakeups(woken.set):
        assert await nodes[0].replay(DeliveryQuery(ids=[made.id]), now=NOW) == [made.id]
        await asyncio.wait_for(woken.wait(), WAKE_TIMEOUT)


async def test_a_release_wakes_the_nodes(nodes: list[PostgresStore]) -> None:
    await nodes[0].enqueue([made := delivery()])
    await nodes[0].claim(limit=5, now=NOW, lease=LEASE)
    woken = asyncio.Event()
    async with nodes[1].listen_wakeups(woken.set):
        await nodes[0].release([made.id])
        await asyncio.wait_for(woken.wait(), WAKE_TIMEOUT)


async def wake_ups(pg_url: str, commit: Callable[[], Awaitable[object]]) -> list[str]:
    """The NOTIFYs that ``commit`` sends: those that arrive before a marker sent after it
    (notifications come in commit order), so no wait decides the answer."""
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute(f"LISTEN {CHANNEL}")
        await commit()
        await conn.execute("SELECT pg_notify(%s, 'marker')", (CHANNEL,))
        sent: list[str] = []
        async with asyncio.timeout(WAKE_TIMEOUT):
            async for notify in conn.notifies():
                if notify.payload == "marker":
                    return sent
                sent.append(notify.payload)
    raise AssertionError("unreachable")


def hand_over(limit: int = 100, *, skip: set[str] | None = None) -> HandOver:
    return HandOver(limit=limit, now=NOW, lease=LEASE, skip_urls=skip or set())


async def test_an_enqueue_whose_hand_over_leases_every_new_head_wakes_no_node(
    nodes: list[PostgresStore], pg_url: str
) -> None:
    handed: list[Claim] = []

    async def commit() -> None:
        handed.extend(
            await nodes[0].enqueue([delivery("O1"), delivery("O2")], hand_over=hand_over()) or []
        )

    assert await wake_ups(pg_url, commit) == []
    assert len(handed) == 2


async def test_an_enqueue_whose_hand_over_leaves_a_head_wakes_the_nodes(
    nodes: list[PostgresStore], pg_url: str
) -> None:
    async def commit() -> None:
        await nodes[0].enqueue([delivery("O1"), delivery("O2")], hand_over=hand_over(limit=1))

    assert await wake_ups(pg_url, commit) == [""]


async def test_a_finish_whose_hand_over_leases_the_successor_wakes_no_node(
    nodes: list[PostgresStore], pg_url: str
) -> None:
    await nodes[0].enqueue([delivery("O1"), successor := delivery("O1")])
    [claim] = await nodes[0].claim(limit=5, now=NOW, lease=LEASE)
    handed: list[Claim] = []

    async def commit() -> None:
        handed.extend(await nodes[0].finish([delivered(claim)], hand_over=hand_over()) or [])

    assert await wake_ups(pg_url, commit) == []
    assert [claim.id for claim in handed] == [successor.id]


async def test_a_finish_whose_hand_over_skips_the_successor_wakes_the_nodes(
    nodes: list[PostgresStore], pg_url: str
) -> None:
    await nodes[0].enqueue([delivery("O1"), delivery("O1")])
    [claim] = await nodes[0].claim(limit=5, now=NOW, lease=LEASE)

    async def commit() -> None:
        await nodes[0].finish([delivered(claim)], hand_over=hand_over(skip={URL}))

    assert await wake_ups(pg_url, commit) == [""]


async def test_a_listener_whose_connection_drops_reconnects_and_wakes(
    nodes: list[PostgresStore], pg_url: str
) -> None:
    woken = asyncio.Event()
    async with nodes[1].listen_wakeups(woken.set):
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN %%' AND pid <> pg_backend_pid()"
            )
        await asyncio.wait_for(woken.wait(), WAKE_TIMEOUT)  # woken on reconnect
        woken.clear()
        await nodes[0].enqueue([delivery()])
        await asyncio.wait_for(woken.wait(), WAKE_TIMEOUT)


async def test_leaving_the_listener_closes_its_connection(
    nodes: list[PostgresStore], pg_url: str
) -> None:
    async with nodes[1].listen_wakeups(lambda: None):
        assert await listening_backends(pg_url) == 1
    deadline = time.monotonic() + WAKE_TIMEOUT  # a backend exits just after its client leaves
    while await listening_backends(pg_url) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert await listening_backends(pg_url) == 0


async def listening_backends(pg_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(pg_url) as admin:
        cur = await admin.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN %%' AND pid <> pg_backend_pid()"
        )
        row = await cur.fetchone()
    assert row is not None
    count: int = row[0]
    return count


async def test_a_dispatcher_is_woken_by_a_commit_on_another_node(
    nodes: list[PostgresStore],
) -> None:
    """Its poll and its lease ends are minutes away: only the NOTIFY brings the second update."""
    ingest, sender = nodes[0], nodes[1]
    receiver = RecordingReceiver()
    with UvicornThread(receiver.app) as server:
        hook_url = f"{server.url}/hook"
        await endpoint_at(ingest, hook_url)
        await ingest.enqueue([delivery("O1", url=hook_url)])
        async with Dispatcher(sender, fast_settings(lease=300), idle_poll=300):
            await eventually(lambda: len(receiver.accepted()) == 1, timeout=WAKE_TIMEOUT)
            await settled(sender, 1)
            await asyncio.sleep(0.5)  # the dispatcher has gone idle for its long poll
            await ingest.enqueue([delivery("O2", url=hook_url)])
            await eventually(lambda: len(receiver.accepted()) == 2, timeout=WAKE_TIMEOUT)


# Plans ------------------------------------------------------------------------------------

_BACKLOG = 10_000
_BATCH = 100


def _prepared(statement: str) -> tuple[str, list[str]]:
    """``statement`` with ``$n`` for its ``%(name)s`` placeholders, for PREPARE; the names."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return re.sub(r"%\((\w+)\)s", number, statement), names


def _rows_read(plan: dict[str, Any]) -> int:
    """Index entries and rows the scans of ``deliveries`` in ``plan`` read, every loop."""
    read = 0
    relation = plan.get("Relation Name") or plan.get("Index Name") or ""
    if plan["Node Type"].endswith("Scan") and relation.startswith("deliveries"):
        rows = plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
        read += round((rows + plan.get("Rows Removed by Index Recheck", 0)) * plan["Actual Loops"])
    return read + sum(_rows_read(child) for child in plan.get("Plans", ()))


@pytest.mark.parametrize("statistics", ["stale", "fresh"])
async def test_the_finish_path_reads_its_batch_not_the_backlog(
    pg_url: str, statistics: str
) -> None:
    """Each statement of a finish with its hand-over, and of a renewal and a release, reads
    rows in proportion to its batch, however long the backlog behind it and whatever plan the
    statistics give: a prepared statement's generic plan or a custom one, from statistics
    taken after the backlog came (fresh) or before (stale: a market-open burst outruns
    autovacuum). A hand-over planned as a join once read every due head per finished queue.
    """
    store = PostgresStore(pg_url)
    await store.open()
    try:
        await seed_registry(store)
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
            await conn.execute("ALTER TABLE deliveries SET (autovacuum_enabled = off)")
        # The batch's orders have a second update each (a successor to hand over); the
        # backlog behind them, one update per order, is all due and all heads.
        chains = [delivery(f"chain-{n}") for n in range(_BATCH) for _ in range(2)]
        await store.enqueue(chains)
        for start in range(0, _BACKLOG, 1000):
            await store.enqueue([delivery(f"o{n}") for n in range(start, start + 1000)])
        claims = await store.claim(limit=_BATCH, now=NOW, lease=LEASE)
        assert {claim.order_id for claim in claims} == {f"chain-{n}" for n in range(_BATCH)}
    finally:
        await store.close()
    ids = [claim.id for claim in claims]
    each = [None] * len(ids)
    finish = {
        "lock_queues": {"ids": ids},
        "insert_attempts": {
            "delivery_ids": ids,
            "numbers": [1] * len(ids),
            "started_ats": [NOW] * len(ids),
            "latencies": [1.0] * len(ids),
            "status_codes": [200] * len(ids),
            "errors": each,
            "prefixes": each,
        },
        "finish": {
            "ids": ids,
            "results": ["dead" if n % 2 else "delivered" for n in range(len(ids))],
            "status_codes": [200] * len(ids),
            "errors": each,
            "delivered_ats": [NOW] * len(ids),
            "next_attempt_ats": [NOW] * len(ids),
            "helds": [claim.lease_until for claim in claims],  # as the dispatcher finishes
        },
        "flag_after_dead": {"ids": ids[1::2]},
        "refresh_queue_heads": {"ids": ids},
        "hand_over": {
            "ids": ids,
            "limit": _BATCH,
            "now": NOW,
            "lease_until": NOW + LEASE,
            "skip_urls": [],
        },
    }
    leases = {
        "renew_leases": {"ids": ids, "held": [claim.lease_until for claim in claims], "until": 0},
        "release": {"ids": ids, "channel": CHANNEL},
    }
    queries = load_queries("postgres")
    statements = {name: queries[name] for name in [*finish, *leases] if name != "hand_over"}
    # the two statements the store assembles from parts, as it assembles them
    statements["refresh_queue_heads"] = postgres_store._PROMOTE_HEADS
    statements["hand_over"] = postgres_store._HAND_OVER
    read: dict[str, int] = {}
    handed: dict[str, int] = {}
    async with await psycopg.AsyncConnection.connect(
        pg_url, autocommit=True, cursor_factory=psycopg.AsyncClientCursor
    ) as conn:
        if statistics == "fresh":
            await conn.execute("ANALYZE deliveries")
        for mode in ("force_generic_plan", "force_custom_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            for transaction in (finish, leases):  # each as the store runs it, then undone
                await conn.execute("BEGIN")
                for name, params in transaction.items():
                    text, names = _prepared(statements[name])
                    await conn.execute(f"PREPARE {name} AS {text}")
                    cur = await conn.execute(
                        f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}"
                        f"({', '.join(['%s'] * len(names))})",
                        [params[key] for key in names],
                    )
                    row = await cur.fetchone()
                    assert row is not None
                    plan = row[0][0]["Plan"]
                    read[f"{name} ({mode})"] = _rows_read(plan)
                    if name == "hand_over":
                        handed[mode] = plan["Actual Rows"]
                await conn.execute("ROLLBACK")
                await conn.execute("DEALLOCATE ALL")
    print(read, handed)
    assert {name: rows for name, rows in read.items() if rows > 10 * _BATCH} == {}
    # and the hand-over did take every successor it made
    assert handed == {"force_generic_plan": _BATCH, "force_custom_plan": _BATCH}


# Retention --------------------------------------------------------------------------------


async def test_one_node_prunes_at_a_time(nodes: list[PostgresStore], pg_url: str) -> None:
    first, second = nodes[0], nodes[1]
    await first.enqueue([delivery(f"o{i}") for i in range(3)])
    claims = await first.claim(limit=10, now=NOW, lease=LEASE)
    await first.finish([delivered(claim) for claim in claims])
    window = {"delivered_before": NOW + 60, "dead_before": NOW + 60, "keys_before": 0.0}
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as pruning:
        async with pruning.transaction():
            # another node in the middle of a pruning batch holds the lock
            cur = await pruning.execute(load_queries("postgres")["try_lock_pruning"])
            assert await cur.fetchone() == (True,)
            assert (await second.prune(**window, limit=10)).delivered == 0
        assert (await second.prune(**window, limit=10)).delivered == 3
