"""B7: PostgreSQL: delivered/s with one and with two worker processes, and the store alone.

A throwaway PostgreSQL server with its default durability (fsync on, synchronous commit) is
started in a temporary folder, as the tests do (``bench/postgres.py``; ``DHAN_POSTBACK_TEST_PG_URL``
uses an existing database instead). Skipped, with the reason, when no server can be had.

* **workers**, end to end (B1 on PostgreSQL): deliveries (one per order) are committed, then
  ``dhan-postback worker`` processes (1, then 2, each with 64 POSTs in flight) send them to
  :mod:`bench.sink` (its own process). The rate is taken between 10 % and 90 % delivered, so
  process start-up does not count. Baseline: B1's bare aiohttp POST loop (64 in flight) to
  the same receiver in the same run.
* **store**, no HTTP at all: claim + finish (delivered) by 1 then 2 processes, until the outbox
  is empty; baseline: the enqueue rate of the same rows in batches of 500.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
import time
from typing import Any

from bench.dispatch_bench import bare, valid_body
from bench.dispatch_bench import fill as fill_one_per_order
from bench.harness import ROOT, Context, Row, Scenario, free_port, median, run_async
from bench.postgres import PostgresServer, unavailable_reason
from dhan_postback.service.registry import register_token
from dhan_postback.service.store.base import (
    Attempt,
    DeliveryStatus,
    NewDelivery,
    Outcome,
    Target,
    TokenRecord,
)
from dhan_postback.service.store.postgres import PostgresStore

__all__ = ["SCENARIO"]

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
        await register_token(
            store, TokenRecord(TOKEN_HASH, "1000000001", URL, None, 0, 2e9), "whsec_YmVuY2g="
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


def store_rates(server: PostgresServer, rows: int, orders: int) -> dict[str, float]:
    """Enqueue rows/s, then claim+finish rows/s with 1 and with 2 processes."""
    rates = {}
    for nodes in (1, 2):
        url = server.new_database()
        rates["enqueue"] = asyncio.run(enqueue_rate(url, rows, orders, 500))
        rates[f"drain-{nodes}"] = drain_rate(url, nodes, 256)
    return rates


# Worker nodes end to end --------------------------------------------------------------------


async def delivered_rate(
    url: str, receiver: str, workers: int, updates: int, concurrency: int
) -> tuple[float, float]:
    """Commit ``updates`` deliveries, start ``workers`` worker processes.

    Returns delivered/s, and how busy the machine's CPUs were meanwhile (0 to 1).
    """
    store = PostgresStore(url)
    await store.open()
    try:
        await fill_one_per_order(store, receiver, updates, valid_body())
        env = {
            **os.environ,
            "DHAN_POSTBACK_DB": url,
            "DHAN_POSTBACK_ALLOW_LOOPBACK": "true",
            "DHAN_POSTBACK_MAX_IN_FLIGHT": str(concurrency),
            "DHAN_POSTBACK_MAX_IN_FLIGHT_PER_URL": str(concurrency),
        }
        command = [sys.executable, "-m", "dhan_postback", "worker"]
        processes = [
            subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for _ in range(workers)
        ]
        try:
            samples = await _watch(store, updates)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
    finally:
        await store.close()
    low, high = updates // 10, updates * 9 // 10
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


CONCURRENCY = 64


def run(ctx: Context) -> list[Row]:
    reason = unavailable_reason()
    if reason is not None:
        return [
            Row("B7", "PostgreSQL, 1 and 2 workers", None, None, "/s", note=f"skipped: {reason}")
        ]
    updates = ctx.pick(6_000, 20_000)
    port = free_port()
    receiver = f"http://127.0.0.1:{port}/hook"
    server = PostgresServer(durable=True).start()
    try:
        with ctx.spawn(
            ["-m", "bench.sink", "--port", str(port)],
            health_url=f"http://127.0.0.1:{port}/stats",
            log_name="b7-sink",
        ):
            body = valid_body()
            run_async(bare(receiver, 2_000, CONCURRENCY, body))  # warm the receiver up
            baselines = [updates / run_async(bare(receiver, updates, CONCURRENCY, body))[0]]
            rates, busy = {}, {}
            for workers in (1, 2):
                url = server.new_database()
                rates[workers], busy[workers] = asyncio.run(
                    delivered_rate(url, receiver, workers, updates, CONCURRENCY)
                )
                baselines.append(updates / run_async(bare(receiver, updates, CONCURRENCY, body))[0])
        store = store_rates(server, ctx.pick(6_000, 20_000), ctx.pick(1_500, 5_000))
    finally:
        server.stop()
    baseline = median(baselines)
    rows = [
        Row(
            "B7",
            f"PostgreSQL, {workers} worker{'s' if workers > 1 else ''}",
            rates[workers],
            baseline,
            "/s",
            note=f"{updates:,} orders, {CONCURRENCY} in flight per worker; machine CPU "
            f"{busy[workers]:.0%} busy meanwhile; baseline: bare POST loop, median of "
            f"{len(baselines)}"
            + (f"; 2 workers / 1: {rates[2] / rates[1]:.2f}x" if workers == 2 else ""),
        )
        for workers in (1, 2)
    ]
    rows += [
        Row(
            "B7",
            f"PostgreSQL store alone, claim+finish, {nodes} process{'es' if nodes > 1 else ''}",
            store[f"drain-{nodes}"],
            store["enqueue"],
            "rows/s",
            note="no HTTP; claims of 256; baseline: enqueue rate of the same rows (batches of 500)",
        )
        for nodes in (1, 2)
    ]
    return rows


SCENARIO = Scenario("B7", "durable delivery throughput on PostgreSQL, 1 and 2 workers", run)
