"""PostgreSQL: the store's own speed, and delivered/s with one and with two worker nodes.

A throwaway PostgreSQL server with its default durability (fsync on, synchronous commit) is
started in a temporary folder, as the tests do (``tests/pg.py``); ``--db URL`` uses an
existing database instead (each run then gets a schema of its own there, dropped at the end).
Measured, in one run:

* **store**, no HTTP at all:
  - *enqueue*: ``--rows`` deliveries on ``--orders`` order queues, committed in batches of
    ``--batch`` (one transaction each: queue locks, one INSERT from arrays, head refresh);
  - *claim + finish*, 1 node then 2 nodes (processes): claim ``--claim`` heads at a time,
    finish them all delivered in one transaction, until the outbox is empty.
* **nodes**, end to end: ``--updates`` deliveries (one per order) are committed, then
  ``dhan-postback worker`` processes (1, then 2, each with ``--concurrency`` POSTs in flight)
  send them to a local receiver (the dispatch bench's raw ASGI app, its own process). The
  rate is taken between 10 % and 90 % delivered, so process start-up does not count.

Run from the repository root::

    .venv/bin/python -m bench.pg_bench
    .venv/bin/python -m bench.pg_bench --updates 40000 --db postgresql://me@localhost/bench
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.pg import ENV_URL, PostgresServer

from dhan_postback.service.store.base import (
    Attempt,
    DeliveryStatus,
    NewDelivery,
    Outcome,
    Target,
    TokenRecord,
)
from dhan_postback.service.store.postgres import PostgresStore

from .dispatch_bench import fill as fill_one_per_order
from .dispatch_bench import start_receiver, valid_body

ROOT = Path(__file__).parent.parent
TOKEN_HASH = "f" * 64
URL = "http://127.0.0.1:9/hook"
BODY = b'{"dhanClientId":"1000000001","orderId":"%d","orderStatus":"PENDING"}'


# The store alone ----------------------------------------------------------------------------


def deliveries(rows: int, orders: int) -> list[NewDelivery]:
    now = time.time()
    return [
        NewDelivery(
            id=f"msg_bench_{n}",
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


async def enqueue_rate(url: str, rows: int, orders: int, batch: int) -> float:
    """Enqueue ``rows`` deliveries in batches; rows/s."""
    store = PostgresStore(url)
    await store.open()
    try:
        await store.add_token(
            TokenRecord(TOKEN_HASH, "1000000001", URL, None, "whsec_YmVuY2g=", 0, 2e9)
        )
        todo = deliveries(rows, orders)
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


def drain_rate(url: str, nodes: int, claim: int) -> float:
    """Drain the outbox with ``nodes`` processes started together; rows/s."""
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
    return finished / elapsed


def store_section(server: PostgresServer, args: argparse.Namespace) -> None:
    print(f"store: {args.rows} deliveries on {args.orders} order queues")
    for nodes in (1, 2):
        url = server.new_database()
        rate = asyncio.run(enqueue_rate(url, args.rows, args.orders, args.batch))
        print(f"  enqueue, batches of {args.batch}:          {rate:9,.0f} rows/s")
        rate = drain_rate(url, nodes, args.claim)
        print(f"  claim+finish, {nodes} node(s), claims of {args.claim}: {rate:9,.0f} rows/s")


# Worker nodes end to end --------------------------------------------------------------------


async def delivered_rate(
    url: str, receiver: str, workers: int, args: argparse.Namespace
) -> tuple[float, float]:
    """Commit ``--updates`` deliveries, start ``workers`` worker processes.

    Returns delivered/s, and how busy the machine's CPUs were meanwhile (0 to 1).
    """
    store = PostgresStore(url)
    await store.open()
    try:
        await fill_one_per_order(store, receiver, args.updates, valid_body())
        env = {
            **os.environ,
            "DHAN_POSTBACK_DB": url,
            "DHAN_POSTBACK_ALLOW_LOOPBACK": "true",
            "DHAN_POSTBACK_MAX_IN_FLIGHT": str(args.concurrency),
            "DHAN_POSTBACK_MAX_IN_FLIGHT_PER_URL": str(args.concurrency),
        }
        command = [sys.executable, "-m", "dhan_postback", "worker"]
        processes = [
            subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
            for _ in range(workers)
        ]
        try:
            samples = await _watch(store, args.updates)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
    finally:
        await store.close()
    low, high = args.updates // 10, args.updates * 9 // 10
    first = next(s for s in samples if s[1] >= low)
    last = next(s for s in samples if s[1] >= high)
    busy = (last[2] - first[2]) / max(1, last[3] - first[3])
    return (high - low) / (last[0] - first[0]), busy


async def _watch(store: PostgresStore, total: int) -> list[tuple[float, int, int, int]]:
    """(time, delivered, CPU busy, CPU total) every 20 ms until ``total`` are delivered."""
    samples: list[tuple[float, int, int, int]] = []
    deadline = time.monotonic() + 600
    while not samples or samples[-1][1] < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {samples[-1][1]} of {total} delivered")
        delivered = (await store.counts())[DeliveryStatus.DELIVERED]
        samples.append((time.perf_counter(), delivered, *_cpu_ticks()))
        await asyncio.sleep(0.02)
    return samples


def _cpu_ticks() -> tuple[int, int]:
    """The machine's (busy, total) CPU ticks so far, from /proc/stat (0, 0 elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(part) for part in stat.readline().split()[1:]]
    except OSError:
        return 0, 0
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def nodes_section(server: PostgresServer, args: argparse.Namespace) -> None:
    process, receiver = start_receiver()
    try:
        print(
            f"nodes: {args.updates} deliveries (one per order) to a local receiver, "
            f"{args.concurrency} in flight per worker"
        )
        rates = {}
        for workers in (1, 2):
            url = server.new_database()
            rates[workers], busy = asyncio.run(delivered_rate(url, receiver, workers, args))
            print(
                f"  {workers} worker(s): {rates[workers]:9,.0f} delivered/s "
                f"(all {os.cpu_count()} CPUs of the machine {busy:.0%} busy meanwhile)"
            )
        print(f"  2 workers / 1 worker: {rates[2] / rates[1]:.2f}")
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="an existing PostgreSQL database URL")
    parser.add_argument("--rows", type=int, default=20_000, help="store: deliveries")
    parser.add_argument("--orders", type=int, default=5_000, help="store: order queues")
    parser.add_argument("--batch", type=int, default=500, help="store: deliveries per enqueue")
    parser.add_argument("--claim", type=int, default=256, help="store: deliveries per claim")
    parser.add_argument("--updates", type=int, default=20_000, help="nodes: deliveries")
    parser.add_argument("--concurrency", type=int, default=64, help="nodes: POSTs per worker")
    parser.add_argument("--only", choices=["store", "nodes"], help="run one section")
    args = parser.parse_args()
    if args.db:
        os.environ[ENV_URL] = args.db
    server = PostgresServer(durable=True).start()
    try:
        if args.only in (None, "store"):
            store_section(server, args)
        if args.only in (None, "nodes"):
            nodes_section(server, args)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
