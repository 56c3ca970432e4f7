"""The PostgreSQL store's own speed: enqueue, and claim + finish, on one node and on two.

A throwaway PostgreSQL server with its default durability (fsync on, synchronous commit) is
started in a temporary folder, as the tests do (``tests/pg.py``), unless ``--db`` names one.
Each run gets a fresh schema. Measured, in one run:

* **enqueue**: ``--rows`` deliveries (``--orders`` orders, the rest their later updates),
  committed in batches of ``--batch`` (one transaction each: queue locks, one INSERT from
  arrays, head refresh, NOTIFY);
* **claim + finish, 1 node**: one process claims ``--claim`` heads at a time and finishes
  them all delivered in one transaction, until the outbox is empty;
* **claim + finish, 2 nodes**: the same outbox again, drained by two processes at once.

Run from the repository root::

    .venv/bin/python -m bench.pg_bench
    .venv/bin/python -m bench.pg_bench --rows 50000 --db postgresql://me@localhost/bench
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from typing import Any

from dhan_postback.service.store.base import (
    Attempt,
    NewDelivery,
    Outcome,
    Target,
    TokenRecord,
)
from dhan_postback.service.store.postgres import PostgresStore

TOKEN_HASH = "f" * 64
URL = "http://127.0.0.1:9/hook"
BODY = b'{"dhanClientId":"1000000001","orderId":"%d","orderStatus":"PENDING"}'


def deliveries(rows: int, orders: int, tag: str) -> list[NewDelivery]:
    now = time.time()
    return [
        NewDelivery(
            id=f"msg_{tag}_{n}",
            dhan_client_id="1000000001",
            token_hash=TOKEN_HASH,
            target=Target.TOKEN,
            partner_id=None,
            url=URL,
            order_id=str(n % orders),
            payload=BODY % n,
            created_at=now,
        )
        for n in range(rows)
    ]


async def fill(url: str, rows: int, orders: int, batch: int, tag: str) -> float:
    """Enqueue ``rows`` deliveries; the rate in rows/s."""
    store = PostgresStore(url)
    await store.open()
    try:
        if await store.get_token(TOKEN_HASH) is None:
            await store.add_token(
                TokenRecord(TOKEN_HASH, "1000000001", URL, None, "whsec_YmVuY2g=", 0, 2e9)
            )
        todo = deliveries(rows, orders, tag)
        started = time.perf_counter()
        for start in range(0, rows, batch):
            await store.enqueue(todo[start : start + batch])
        return rows / (time.perf_counter() - started)
    finally:
        await store.close()


async def drain(url: str, claim: int) -> int:
    """Claim and finish (delivered) until nothing is pending; how many this node finished."""
    store = PostgresStore(url)
    await store.open()
    done = 0
    try:
        while True:
            now = time.time()
            claims = await store.claim(limit=claim, now=now, lease=60)
            if not claims:
                if await store.next_due() is None:
                    return done
                await asyncio.sleep(0.001)
                continue
            await store.finish(
                [Outcome(Attempt(c.id, c.attempts + 1, now, 1.0, 200), "delivered") for c in claims]
            )
            done += len(claims)
    finally:
        await store.close()


def _drain_process(url: str, claim: int, start: Any, results: Any) -> None:
    start.wait()
    results.put(asyncio.run(drain(url, claim)))


def drain_with(url: str, nodes: int, claim: int) -> tuple[float, int]:
    """Drain with ``nodes`` processes started together; (seconds, rows finished)."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    processes = [
        context.Process(target=_drain_process, args=(url, claim, start, results))
        for _ in range(nodes)
    ]
    for process in processes:
        process.start()
    time.sleep(1.0)  # let them import and connect before the clock starts
    started = time.perf_counter()
    start.set()
    finished = sum(results.get(timeout=600) for _ in processes)
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join()
    return elapsed, finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="an existing PostgreSQL URL (default: a throwaway server)")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--orders", type=int, default=5_000, help="distinct (url, order) queues")
    parser.add_argument("--batch", type=int, default=500, help="deliveries per enqueue")
    parser.add_argument("--claim", type=int, default=256, help="deliveries per claim")
    args = parser.parse_args()

    server = None
    if args.db:
        url = args.db
    else:
        from tests.pg import PostgresServer

        server = PostgresServer(durable=True).start()
        url = server.new_database()
    try:
        print(f"PostgreSQL store, {args.rows} deliveries on {args.orders} order queues")
        for nodes in (1, 2):
            rate = asyncio.run(fill(url, args.rows, args.orders, args.batch, f"n{nodes}"))
            print(f"  enqueue (batches of {args.batch}):        {rate:10,.0f} rows/s")
            elapsed, finished = drain_with(url, nodes, args.claim)
            print(
                f"  claim+finish, {nodes} node{'s' if nodes > 1 else ' '} "
                f"(claims of {args.claim}): {finished / elapsed:10,.0f} rows/s"
            )
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
