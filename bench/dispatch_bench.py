"""B1: delivered per second, our dispatcher over SQLite vs a bare POST loop, same receiver.

Both send the same payload to the same receiver (:mod:`bench.sink`, its own process), with the
same concurrency, back to back in each round:

* **bare**: aiohttp + uvloop, one session, ``concurrency`` workers POSTing pre-encoded bytes
  with fixed headers: no store, no signing, no retries. The ceiling for our client.
* **dispatcher**: the deliveries (one per order, so order never holds anything back) committed
  to a fresh SQLite file first, then a :class:`Dispatcher` with ``max_in_flight_per_url =
  max_in_flight = concurrency``; the clock stops when the store has committed every one
  delivered. A :class:`NullStore` run shows the dispatcher's own ceiling (no store cost).
* **multi-update orders**: the same, with the simulator's orders (several updates each, as
  one time-ordered stream): each update waits for its predecessor's outcome, so this is the
  row that shows what an order's chain costs (the commit of an outcome hands the successor
  over to the dispatcher; see ``Dispatcher.enqueue``).

The CPU time per delivery (this process, every thread) goes in the notes: it is steadier than
the rates on a shared machine. Run alone: ``python -m bench --only B1``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp

from bench.harness import ROOT, Context, Row, Scenario, free_port, median, run_async
from dhan_postback import payload
from dhan_postback.service.dispatcher import Dispatcher
from dhan_postback.service.ids import new_delivery_id
from dhan_postback.service.metrics import ServiceMetrics
from dhan_postback.service.registry import register_token
from dhan_postback.service.store import create_store
from dhan_postback.service.store.base import (
    Claim,
    DeliveryStatus,
    EndpointRecord,
    NewDelivery,
    Store,
    Target,
    TokenRecord,
)
from dhan_postback.settings import ServiceSettings
from dhan_postback.signing import generate_secret
from dhan_postback.simulator import Simulator, interleave

BODY = (ROOT / "tests" / "fixtures" / "docs_example.json").read_bytes()
CLIENT = "1000000003"
SEED = 19

Update = tuple[str, bytes]
"""An update to deliver: its order id and its body."""


def valid_body() -> bytes:
    """A valid compact payload (the docs' example, repaired and re-encoded)."""
    return payload.dumps(payload.parse(BODY).to_update())


async def bare(url: str, count: int, concurrency: int, body: bytes) -> tuple[float, float]:
    """Wall and CPU seconds for ``count`` POSTs by ``concurrency`` workers on one session."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    headers = {"Content-Type": "application/json", "User-Agent": "bench"}
    remaining = count

    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, timeout=aiohttp.ClientTimeout(total=5)
    ) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    assert response.status == 200

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, time.process_time() - cpu


class NullStore:
    """A store that costs nothing: to see the dispatcher's own ceiling (``--db null``).

    Only what this benchmark needs: every order has one update, so every row is a head;
    nothing is durable; retries are not kept.
    """

    def __init__(self) -> None:
        self._due: deque[Claim] = deque()
        self._secret = ""
        self._delivered = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def add_token(self, token: TokenRecord) -> None:
        return None

    async def ensure_endpoint(self, endpoint: EndpointRecord) -> EndpointRecord:
        self._secret = endpoint.signing_secret
        return endpoint

    async def enqueue(self, deliveries: list[NewDelivery]) -> None:
        for number, new in enumerate(deliveries):
            self._due.append(
                Claim(new.id, number, new.url, new.order_id, new.payload, self._secret, 0, 0, 0.0)
            )

    async def claim(
        self, *, limit: int, now: float, lease: float, skip_urls: Any = ()
    ) -> list[Claim]:
        taken = []
        while self._due and len(taken) < limit:
            taken.append(dataclasses.replace(self._due.popleft(), lease_until=now + lease))
        return taken

    async def finish(
        self, outcomes: list[Any], hand_over: Any = None, held: Any = None
    ) -> list[Claim] | None:
        self._delivered += sum(o.result == "delivered" for o in outcomes)
        return None if hand_over is None else []  # no successors: one update per order

    async def release(self, ids: list[str], held: Any = None) -> None:
        raise AssertionError("the benchmark never gives claims back")

    async def renew(self, leases: list[tuple[str, float]], *, until: float) -> list[str]:
        return [delivery_id for delivery_id, _ in leases]

    async def next_due(self) -> float | None:
        return 0.0 if self._due else None

    async def counts(self) -> dict[DeliveryStatus, int]:
        return {DeliveryStatus.DELIVERED: self._delivered}


def one_per_order(count: int, body: bytes) -> list[Update]:
    return [(f"order-{number}", body) for number in range(count)]


def simulated(count: int) -> tuple[list[Update], int]:
    """``count`` updates of the simulator's orders as one stream (each order's in its
    order), and how many orders they are."""
    simulator, rng = Simulator(SEED, clients=(CLIENT,)), random.Random(SEED)
    updates: list[Update] = []
    while len(updates) < count:
        stream = interleave(simulator.orders(500), rng)
        updates += [(update.order_id, payload.dumps(update)) for update in stream]
    updates = updates[:count]
    return updates, len({order_id for order_id, _ in updates})


async def fill(store: Store, url: str, count: int, body: bytes) -> None:
    """``count`` orders of one update each."""
    await fill_with(store, url, one_per_order(count, body))


async def fill_with(store: Store, url: str, updates: Sequence[Update]) -> None:
    now = time.time()
    token = TokenRecord(
        token_hash=f"bench-{uuid.uuid4().hex}",
        dhan_client_id=CLIENT,
        postback_url=url,
        partner_id=None,
        created_at=now,
        expires_at=now + 86400,
    )
    await register_token(store, token, generate_secret())
    await enqueue_batched(
        store,
        (
            token_delivery(token.dhan_client_id, token.token_hash, url, order_id, body, now)
            for order_id, body in updates
        ),
    )


def token_delivery(
    client_id: str, token_hash: str, url: str, order_id: str, body: bytes, now: float
) -> NewDelivery:
    """A delivery of ``body`` to a token's own URL, as the service's ingest makes one (its id
    a ULID, as ingest's: ids in creation order, which is how the attempts' index by delivery
    id grows; random ids would scatter its pages)."""
    return NewDelivery(
        id=new_delivery_id(),
        dhan_client_id=client_id,
        token_hash=token_hash,
        target=Target.TOKEN,
        partner_id=None,
        url=url,
        order_id=order_id,
        payload=body,
        created_at=now,
    )


async def enqueue_batched(store: Store, deliveries: Iterable[NewDelivery]) -> None:
    """Commit ``deliveries`` a thousand at a time: a backlog built fast, without holding
    every row of a large one in one transaction."""
    batch: list[NewDelivery] = []
    for delivery in deliveries:
        batch.append(delivery)
        if len(batch) == 1000:
            await store.enqueue(batch)
            batch = []
    if batch:
        await store.enqueue(batch)


class Finished:
    """Wraps a store to notice, at no cost, when ``count`` deliveries are committed delivered."""

    def __init__(self, inner: Any, count: int) -> None:
        self._inner = inner
        self._left = count
        self.done = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def finish(self, outcomes: list[Any], **hand_over: Any) -> list[Claim] | None:
        handed: list[Claim] | None = await self._inner.finish(outcomes, **hand_over)
        self._left -= sum(outcome.result == "delivered" for outcome in outcomes)
        if self._left <= 0:
            self.done.set()
        return handed


async def dispatched(
    db: str, url: str, count: int, concurrency: int, body: bytes
) -> tuple[float, float]:
    """Wall and CPU seconds from the dispatcher's start until ``count`` orders of one
    update each are delivered."""
    return await dispatched_updates(db, url, one_per_order(count, body), concurrency)


async def dispatched_updates(
    db: str, url: str, updates: Sequence[Update], concurrency: int
) -> tuple[float, float]:
    """Wall and CPU seconds from the dispatcher's start until ``updates`` are delivered."""
    count = len(updates)
    inner: Any = NullStore() if db == "null" else create_store(db)
    await inner.open()
    try:
        await fill_with(inner, url, updates)
        settings = ServiceSettings(
            allow_loopback=True,
            max_in_flight=concurrency,
            max_in_flight_per_url=concurrency,
            retry_schedule="0s,1s",
        )
        store = Finished(inner, count)
        started, cpu = time.perf_counter(), time.process_time()
        async with Dispatcher(store, settings, metrics=ServiceMetrics()):
            await store.done.wait()
            elapsed = time.perf_counter() - started, time.process_time() - cpu
        assert (await inner.counts())[DeliveryStatus.DELIVERED] == count
        return elapsed
    finally:
        await inner.close()


CONCURRENCY = 64


def run(ctx: Context) -> list[Row]:
    """Median over rounds of bare and dispatcher rates, each round on a fresh SQLite file."""
    count = ctx.pick(4_000, 20_000)
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    body = valid_body()
    single = one_per_order(count, body)
    multi, orders = simulated(count)
    bare_rates: list[float] = []
    ours_rates: list[float] = []
    multi_rates: list[float] = []
    null_rates: list[float] = []
    cpu: dict[str, list[float]] = {"bare": [], "ours": [], "multi": [], "null": []}
    with ctx.spawn(
        ["-m", "bench.sink", "--port", str(port)],
        health_url=f"http://127.0.0.1:{port}/stats",
        log_name="b1-sink",
    ):
        run_async(bare(url, 2_000, CONCURRENCY, body))  # warm the receiver up
        for round_number in range(ctx.rounds):
            wall, used = run_async(bare(url, count, CONCURRENCY, body))
            bare_rates.append(count / wall)
            cpu["bare"].append(used / count)
            db = f"sqlite:///{ctx.scratch('b1')}/bench-{round_number}.db"
            wall, used = run_async(dispatched_updates(db, url, single, CONCURRENCY))
            ours_rates.append(count / wall)
            cpu["ours"].append(used / count)
            db = f"sqlite:///{ctx.scratch('b1')}/bench-multi-{round_number}.db"
            wall, used = run_async(dispatched_updates(db, url, multi, CONCURRENCY))
            multi_rates.append(count / wall)
            cpu["multi"].append(used / count)
            if round_number == 0:
                wall, used = run_async(dispatched_updates("null", url, single, CONCURRENCY))
                null_rates.append(count / wall)
                cpu["null"].append(used / count)
    ours, baseline = median(ours_rates), median(bare_rates)
    ours_multi = median(multi_rates)

    def micros(name: str) -> str:
        return f"{median(cpu[name]) * 1e6:.0f} us"

    return [
        Row(
            "B1",
            "durable delivery, SQLite",
            ours,
            baseline,
            "/s",
            target=">= 0.8x",
            met=ours / baseline >= 0.8,
            note=f"{count:,} orders x {ctx.rounds} rounds, {CONCURRENCY} in flight; CPU per "
            f"delivery: ours {micros('ours')}, bare {micros('bare')}",
        ),
        Row(
            "B1",
            "durable delivery, SQLite, multi-update orders",
            ours_multi,
            baseline,
            "/s",
            target=">= 0.8x",
            met=ours_multi / baseline >= 0.8,
            note=f"{count:,} updates of {orders:,} simulated orders (as one stream) x "
            f"{ctx.rounds} rounds, {CONCURRENCY} in flight; CPU per delivery: ours "
            f"{micros('multi')}, bare {micros('bare')}",
        ),
        Row(
            "B1",
            "dispatcher, no-cost store",
            median(null_rates),
            baseline,
            "/s",
            note=f"the dispatcher's own ceiling (1 round); CPU {micros('null')} per delivery",
        ),
    ]


SCENARIO = Scenario("B1", "durable delivery throughput (SQLite) vs bare aiohttp POST loop", run)
