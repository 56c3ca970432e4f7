"""B2: latency from submit to received at a steady rate, through ``serve`` vs a bare POST.

The client submits single-update ingest requests on a fixed schedule (open loop: the next one
is due at ``start + k / rate`` whether or not earlier ones have been answered), each update
its own order; the receiver (:mod:`bench.sink` with ``--record``) notes the arrival of each
order id on the machine-wide monotonic clock. Latency = arrival - the moment the client
started the submit. Baseline: the same bodies POSTed on the same schedule straight to the same
receiver (the latency of one bare POST on this machine). The notes add the storage floor:
the latency of one durable SQLite commit (one row, WAL, synchronous=FULL) on the same disk;
every update costs the service about three of them (ingest, claim, finish).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp

from bench.harness import Context, Row, Scenario, free_port, median, percentile, run_async
from bench.ingest_bench import CLIENT_ID, create_token, serve, update_body

__all__ = ["SCENARIO", "latencies", "paced"]

RATE = 500.0


async def paced(
    submit: Callable[[str], Awaitable[None]], prefix: str, rate: float, duration: float
) -> dict[str, float]:
    """Call ``submit(order_id)`` ``rate`` times a second for ``duration`` s, each in its own
    task; return when each order id was submitted (``time.monotonic()``)."""
    submitted: dict[str, float] = {}
    tasks = []
    started = time.monotonic()
    for number in range(int(rate * duration)):
        delay = started + number / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        order_id = f"{prefix}-{number}"
        submitted[order_id] = time.monotonic()
        tasks.append(asyncio.create_task(submit(order_id)))
    await asyncio.gather(*tasks)
    return submitted


async def collect(session: aiohttp.ClientSession, sink: str, expected: int) -> dict[str, float]:
    """Wait (30 s at most) until the sink has seen ``expected`` POSTs, then take its arrivals."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with session.get(sink + "/stats") as response:
            if (await response.json())["count"] >= expected:
                break
        await asyncio.sleep(0.1)
    async with session.get(sink + "/arrivals") as response:
        arrivals: dict[str, float] = await response.json()
        return arrivals


def latencies(submitted: dict[str, float], arrivals: dict[str, float]) -> list[float]:
    """Sorted seconds from submit to arrival, for the orders that arrived."""
    return sorted(arrivals[key] - sent for key, sent in submitted.items() if key in arrivals)


async def measure(
    sink: str, submit_url: str, headers: dict[str, str], duration: float
) -> tuple[list[float], int]:
    """Latencies of one paced run (after a one-second warm-up), and how many were sent."""
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=256)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        async with session.get(sink + "/stats") as response:
            seen = (await response.json())["count"]

        async def submit(order_id: str) -> None:
            async with session.post(
                submit_url, data=update_body(order_id), headers=headers
            ) as response:
                await response.read()
                if response.status >= 300:
                    raise RuntimeError(f"{submit_url}: {response.status}")

        warm = await paced(submit, f"w{uuid.uuid4().hex[:6]}", RATE, 1.0)
        await collect(session, sink, seen + len(warm))
        submitted = await paced(submit, uuid.uuid4().hex[:8], RATE, duration)
        arrivals = await collect(session, sink, seen + len(warm) + len(submitted))
        return latencies(submitted, arrivals), len(submitted)


def commit_latencies(directory: Path, count: int = 300) -> list[float]:
    """Sorted seconds of ``count`` one-row durable commits (WAL, synchronous=FULL)."""
    connection = sqlite3.connect(directory / "commits.db", isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE t (x INTEGER)")
        taken = []
        for number in range(count):
            started = time.perf_counter()
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO t VALUES (?)", (number,))
            connection.execute("COMMIT")
            taken.append(time.perf_counter() - started)
        return sorted(taken)
    finally:
        connection.close()


def _rows(
    ours: Sequence[Sequence[float]],
    bare: Sequence[Sequence[float]],
    commits: Sequence[float],
    sent: int,
    duration: float,
) -> list[Row]:
    """Rows of the medians over rounds of each round's p50 and p99."""
    lost = sum(sent - len(round_) for round_ in ours)
    note = (
        f"median of {len(ours)} rounds of {sent:,} updates at {RATE:.0f}/s ({duration:.0f} s); "
        f"{lost} not received"
    )
    rows = []
    for name, fraction, limit in (("p50", 0.5, 5.0), ("p99", 0.99, 25.0)):
        value = median([percentile(round_, fraction) * 1000 for round_ in ours])
        each = ", ".join(f"{percentile(round_, fraction) * 1000:.1f}" for round_ in ours)
        rows.append(
            Row(
                "B2",
                f"submit -> received, {name}",
                value,
                median([percentile(round_, fraction) * 1000 for round_ in bare]),
                "ms",
                target=f"< {limit:.0f} ms",
                met=value < limit and lost == 0,
                note=(
                    note
                    if name == "p50"
                    else "baseline: the same POST straight to the receiver; one SQLite commit "
                    f"on this disk: p50 {percentile(commits, 0.5) * 1000:.2f} ms, "
                    f"p99 {percentile(commits, 0.99) * 1000:.2f} ms"
                )
                + f"; ours by round: {each} ms",
                higher_is_better=False,
            )
        )
    return rows


def run(ctx: Context) -> list[Row]:
    """Alternate bare and ours each round, on one receiver and one ``serve``."""
    duration = ctx.pick(3.0, 8.0)
    port = free_port()
    sink = f"http://127.0.0.1:{port}"
    ours: list[list[float]] = []
    bare: list[list[float]] = []
    with (
        ctx.spawn(
            ["-m", "bench.sink", "--port", str(port), "--record"],
            health_url=sink + "/stats",
            log_name="b2-sink",
        ),
        serve(ctx, "b2") as service,
    ):

        async def token() -> str:
            async with aiohttp.ClientSession() as session:
                return await create_token(session, service, sink + "/hook", CLIENT_ID)

        headers = {"access-token": run_async(token()), "Content-Type": "application/json"}
        direct = {"Content-Type": "application/json"}
        for _ in range(ctx.rounds):
            bare.append(run_async(measure(sink, sink + "/hook", direct, duration))[0])
            latencies, sent = run_async(
                measure(sink, service.url + "/v2/order-updates", headers, duration)
            )
            ours.append(latencies)
    commits = commit_latencies(ctx.scratch("b2-commits"))
    return _rows(ours, bare, commits, sent, duration)


SCENARIO = Scenario("B2", "latency submit -> received at 500 updates/s", run)
