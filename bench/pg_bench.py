"""B7: PostgreSQL: delivered/s and CPU per delivery against SQLite, and the store alone.

A throwaway PostgreSQL server with its default durability (fsync on, synchronous commit) is
started in a temporary folder, as the tests do (``bench/postgres.py``; ``DHAN_POSTBACK_TEST_PG_URL``
uses an existing database instead). Skipped, with the reason, when no server can be had.

* **workers**, end to end (B1 on PostgreSQL): deliveries (one per order) are committed, then
  ``dhan-postback worker`` processes (1, then 2, each with 64 POSTs in flight) send them to
  :mod:`bench.sink` (its own process). The rate is taken between 10 % and 90 % delivered, so
  process start-up does not count. Baseline: B1's bare aiohttp POST loop (64 in flight) to
  the same receiver in the same run.
* **CPU per delivery**, PostgreSQL against SQLite: the same run with one worker on a SQLite
  file (the store in the worker's process). PostgreSQL's figure is the worker's CPU plus the
  server's (every PostgreSQL process), per delivery over the same window: what a delivery
  costs the machines, whichever runs the database.
* **one commit**: the latency of a one-row durable commit on PostgreSQL (fsync on) against
  one on SQLite (WAL, synchronous=FULL) on the same disk, as B2 measures it: what a commit
  costs each, before any batching.
* **store**, no HTTP at all: claim + finish (delivered) by 1 then 2 processes, until the outbox
  is empty; baseline: the enqueue rate of the same rows in batches of 500, and for 2 processes
  the rate of 1: how the database itself scales with nodes.

This machine has 2 cores, shared by PostgreSQL, the workers, the receiver and the load: it
cannot show node scaling end to end (the rows say so); the store-only rows and the CPU per
delivery are what a capacity model can use (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg

from bench.dispatch_bench import bare, valid_body
from bench.dispatch_bench import fill as fill_one_per_order
from bench.harness import (
    ROOT,
    Context,
    Row,
    Scenario,
    cpu_seconds,
    free_port,
    median,
    percentile,
    run_async,
)
from bench.latency_bench import commit_latencies
from bench.postgres import PostgresServer, unavailable_reason
from bench.watch import watch
from dhan_postback.service.registry import register_token
from dhan_postback.service.store import create_store
from dhan_postback.service.store.base import (
    Attempt,
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


def store_rates(
    server: PostgresServer, rows: int, orders: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Enqueue rows/s, then claim+finish rows/s with 1 and with 2 processes; and the server's
    CPU seconds per row for each (none when it is not ours to measure)."""
    rates, cpu = {}, {}

    def server_cpu(name: str, since: float | None) -> None:
        now = server.cpu_seconds()
        if since is not None and now is not None:
            cpu[name] = (now - since) / rows

    for nodes in (1, 2):
        url = server.new_database()
        since = server.cpu_seconds()
        rates["enqueue"] = asyncio.run(enqueue_rate(url, rows, orders, 500))
        server_cpu("enqueue", since)
        since = server.cpu_seconds()
        rates[f"drain-{nodes}"] = drain_rate(url, nodes, 256)
        server_cpu(f"drain-{nodes}", since)
    return rates, cpu


def pg_commit_latencies(url: str, count: int = 300) -> list[float]:
    """Sorted seconds of ``count`` one-row commits on PostgreSQL (its default durability)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE commits (x integer)")
        taken = []
        for number in range(count):
            started = time.perf_counter()
            with conn.transaction():
                conn.execute("INSERT INTO commits VALUES (%s)", (number,))
            taken.append(time.perf_counter() - started)
        return sorted(taken)


# Worker nodes end to end --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Delivered:
    """One run of worker processes, between 10 % and 90 % delivered."""

    rate: float
    busy: float
    """How busy the machine's CPUs were meanwhile (0 to 1)."""
    worker_cpu: float
    """CPU seconds of the workers per delivery."""
    server_cpu: float | None
    """CPU seconds of the database server per delivery (None: not measured)."""


async def delivered_rate(
    url: str,
    receiver: str,
    workers: int,
    updates: int,
    concurrency: int,
    server_cpu: Callable[[], float | None] = lambda: None,
) -> Delivered:
    """Commit ``updates`` deliveries to the database at ``url`` (PostgreSQL or SQLite), start
    ``workers`` worker processes, watch them deliver."""
    store = create_store(url)
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

        def workers_cpu() -> float:
            return sum(cpu_seconds(p.pid) for p in processes)

        try:
            # The sink counts, not the store: a count of the deliveries by status every 20 ms
            # was a query over the whole backlog on the database server whose CPU the row
            # measures (16 ms each over 6,000 orders).
            window = await watch(
                receiver.rsplit("/", 1)[0],
                updates,
                meters=[workers_cpu, lambda: server_cpu() or 0.0],
            )
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
    finally:
        await store.close()
    workers, server = window.cpu_per_delivery
    return Delivered(window.rate, window.busy, workers, None if server_cpu() is None else server)


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
            runs: dict[int, Delivered] = {}
            for workers in (1, 2):
                url = server.new_database()
                runs[workers] = asyncio.run(
                    delivered_rate(url, receiver, workers, updates, CONCURRENCY, server.cpu_seconds)
                )
                baselines.append(updates / run_async(bare(receiver, updates, CONCURRENCY, body))[0])
            sqlite_url = f"sqlite:///{ctx.scratch('b7-sqlite')}/outbox.db"
            on_sqlite = asyncio.run(delivered_rate(sqlite_url, receiver, 1, updates, CONCURRENCY))
        store, store_cpu = store_rates(server, ctx.pick(6_000, 20_000), ctx.pick(1_500, 5_000))
        pg_commits = pg_commit_latencies(server.new_database())
        sqlite_commits = commit_latencies(ctx.scratch("b7-commits"))
    finally:
        server.stop()
    baseline = median(baselines)
    no_scaling = (
        "this 2-core machine cannot show node scaling end to end: PostgreSQL, the workers, "
        "the receiver and the load share its two cores"
    )

    def micros(seconds: float | None) -> str:
        return "not measured" if seconds is None else f"{seconds * 1e6:.0f} us"

    rows = [
        Row(
            "B7",
            f"PostgreSQL, {workers} worker{'s' if workers > 1 else ''}",
            runs[workers].rate,
            baseline,
            "/s",
            note=f"{updates:,} orders, {CONCURRENCY} in flight per worker; machine CPU "
            f"{runs[workers].busy:.0%} busy meanwhile; CPU per delivery: workers "
            f"{micros(runs[workers].worker_cpu)}, PostgreSQL {micros(runs[workers].server_cpu)}; "
            f"baseline: bare POST loop, median of {len(baselines)}"
            + (
                f"; 2 workers / 1: {runs[2].rate / runs[1].rate:.2f}x; {no_scaling}"
                if workers == 2
                else ""
            ),
        )
        for workers in (1, 2)
    ]
    one = runs[1]
    rows.append(
        Row(
            "B7",
            "CPU per delivery, PostgreSQL (worker + server) vs SQLite, 1 worker",
            (one.worker_cpu + (one.server_cpu or 0.0)) * 1e6,
            on_sqlite.worker_cpu * 1e6,
            "us",
            note=f"same {updates:,} orders, same receiver, same run; PostgreSQL (fsync on): "
            f"worker {micros(one.worker_cpu)} + server {micros(one.server_cpu)}, "
            f"{one.rate:,.0f}/s; SQLite (WAL, synchronous=FULL, in the worker's process): "
            f"{on_sqlite.rate:,.0f}/s",
            higher_is_better=False,
        )
    )
    rows.append(
        Row(
            "B7",
            "one durable commit, PostgreSQL vs SQLite, p50",
            percentile(pg_commits, 0.5) * 1000,
            percentile(sqlite_commits, 0.5) * 1000,
            "ms",
            note=f"{len(pg_commits)} one-row commits each, one after another, same disk; "
            f"p99: PostgreSQL {percentile(pg_commits, 0.99) * 1000:.2f} ms, SQLite "
            f"{percentile(sqlite_commits, 0.99) * 1000:.2f} ms; PostgreSQL through psycopg on "
            "loopback (fsync on, synchronous_commit on), SQLite WAL with synchronous=FULL",
            higher_is_better=False,
        )
    )
    rows += [
        Row(
            "B7",
            "PostgreSQL store alone, claim+finish, 1 process",
            store["drain-1"],
            store["enqueue"],
            "rows/s",
            note="no HTTP; claims of 256; baseline: enqueue rate of the same rows (batches of "
            f"500); PostgreSQL CPU per row: enqueue {micros(store_cpu.get('enqueue'))}, "
            f"claim+finish {micros(store_cpu.get('drain-1'))}",
        ),
        Row(
            "B7",
            "PostgreSQL store alone, claim+finish, 2 processes vs 1",
            store["drain-2"],
            store["drain-1"],
            "rows/s",
            note="no HTTP; claims of 256; baseline: the same with 1 process: how the database "
            f"scales with nodes (the ratio); PostgreSQL CPU per row "
            f"{micros(store_cpu.get('drain-2'))}; {no_scaling}, so this is the scaling it can "
            "show",
        ),
    ]
    return rows


SCENARIO = Scenario("B7", "PostgreSQL: 1 and 2 workers, CPU against SQLite, the store", run)
