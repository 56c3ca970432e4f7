"""peers: the same updates through Celery + Redis and arq + Redis, as a user would build it.

What a Python user builds instead of this project: a task per update, on a Redis queue, that
signs the update (Standard Webhooks, the ``standardwebhooks`` package) and POSTs it to the
Postback URL (:mod:`bench.peer_celery`, :mod:`bench.peer_arq`). Each peer gets the same
updates, one per order, POSTed to the same receiver as B1 (:mod:`bench.sink`, its own
process), with as many POSTs in flight as ours (64):

* **Celery** 5 with the thread pool (64 threads, a ``requests`` session each), ``acks_late``;
* **arq** with ``max_jobs`` 64 and one aiohttp session on uvloop.

Each peer runs once (the slowest take minutes on this machine), the baselines every round.
The updates are queued first (the enqueue rate is in the notes), then the worker process
starts; the rate is taken between 10 % and 90 % delivered, as the receiver counts them, so the
worker's start-up does not count. Redis (Debian's ``redis-server``) runs on a free loopback
port with no persistence at all: the peers' queue is not durable, ours fsyncs every commit.
Nor do the peers keep an order's updates in order; ours does.

Baselines from the same run: B1's bare aiohttp POST loop (the ratio), and B1's dispatcher over
SQLite (a row of its own, measured as B1 does: from its start until the store has committed
every delivery). Skipped with one line when ``redis-server`` or the ``peers`` extras are
missing: ``pip install -e '.[peers]'`` and ``apt-get install redis-server``.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import subprocess
import time
import uuid
from collections.abc import Callable

from bench.dispatch_bench import CONCURRENCY, bare, dispatched, valid_body
from bench.harness import Context, Row, Scenario, free_port, median, run_async
from bench.redis_server import Redis, redis_server, unavailable_reason
from bench.watch import Window, counted, watch
from dhan_postback.signing import generate_secret

__all__ = ["SCENARIO", "missing_extras"]

EXTRAS = ("celery", "redis", "arq", "requests", "standardwebhooks")


def missing_extras() -> list[str]:
    """The ``peers`` extras that cannot be imported here."""
    return [name for name in EXTRAS if importlib.util.find_spec(name) is None]


def enqueue_celery(redis: str, url: str, count: int, body: str) -> float:
    """Queue ``count`` deliver tasks with a producer-only Celery app; tasks/s."""
    from celery import Celery

    app = Celery("bench_peers", broker=redis)
    app.conf.broker_connection_retry_on_startup = True
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task("deliver", args=(url, f"msg_{uuid.uuid4().hex}", body), producer=producer)
    elapsed = time.perf_counter() - started
    app.close()
    return count / elapsed


async def enqueue_arq(redis: str, url: str, count: int, body: str) -> float:
    """Queue ``count`` deliver jobs, 64 enqueues at a time; jobs/s."""
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(redis))
    queued = 0

    async def producer() -> None:
        nonlocal queued
        while queued < count:
            queued += 1
            await pool.enqueue_job("deliver", url, f"msg_{uuid.uuid4().hex}", body)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(CONCURRENCY)))
        return count / (time.perf_counter() - started)
    finally:
        await pool.aclose()


PEERS: dict[str, tuple[str, str, Callable[[str, str, int, str], float]]] = {
    "celery": (
        "Celery + Redis, a task per update",
        "bench.peer_celery",
        enqueue_celery,
    ),
    "arq": (
        "arq + Redis, a job per update",
        "bench.peer_arq",
        lambda redis, url, count, body: run_async(enqueue_arq(redis, url, count, body)),
    ),
}


def run_peer(
    ctx: Context, name: str, redis: Redis, sink: str, count: int, body: str, secret: str
) -> tuple[Window, float]:
    """Queue ``count`` updates, then start the peer's worker; its window and enqueue rate."""
    _, module, enqueue = PEERS[name]
    queued = enqueue(redis.url, sink + "/hook", count, body)
    env = {
        "BENCH_PEERS_REDIS_URL": redis.url,
        "BENCH_PEERS_SECRET": secret,
        "BENCH_PEERS_CONCURRENCY": str(CONCURRENCY),
    }
    start = counted(sink)
    with ctx.spawn(["-m", module], env=env, log_name=f"peer-{name}") as worker:
        window = run_async(watch(sink, count, [worker.pid, redis.pid], start=start))
    return window, queued


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def run(ctx: Context) -> list[Row]:
    reasons = [reason] if (reason := unavailable_reason()) else []
    if missing := missing_extras():
        reasons.append(
            f"missing the peers extras ({', '.join(missing)}): pip install -e '.[peers]'"
        )
    if reasons:
        reason = "; ".join(reasons)
        return [
            Row("peers", "Celery and arq over Redis", None, None, "/s", note=f"skipped: {reason}")
        ]
    count = ctx.pick(4_000, 20_000)
    port = free_port()
    sink = f"http://127.0.0.1:{port}"
    body = valid_body()
    secret = generate_secret()
    rates: dict[str, list[float]] = {"bare": [], "ours": [], **{name: [] for name in PEERS}}
    cpu: dict[str, list[tuple[float, ...]]] = {name: [] for name in PEERS}
    queued: dict[str, list[float]] = {name: [] for name in PEERS}
    ours_cpu: list[float] = []
    with (
        ctx.spawn(
            ["-m", "bench.sink", "--port", str(port)],
            health_url=sink + "/stats",
            log_name="peers-sink",
        ),
        redis_server(ctx.scratch("peers-redis")) as redis,
    ):
        run_async(bare(sink + "/hook", 2_000, CONCURRENCY, body))  # warm the receiver up
        for round_number in range(ctx.rounds):
            wall, _ = run_async(bare(sink + "/hook", count, CONCURRENCY, body))
            rates["bare"].append(count / wall)
            db = f"sqlite:///{ctx.scratch('peers-ours')}/bench-{round_number}.db"
            wall, used = run_async(dispatched(db, sink + "/hook", count, CONCURRENCY, body))
            rates["ours"].append(count / wall)
            ours_cpu.append(used / count)
            for name in PEERS if round_number == 0 else ():
                window, enqueued = run_peer(ctx, name, redis, sink, count, body.decode(), secret)
                rates[name].append(window.rate)
                cpu[name].append(window.cpu_per_delivery)
                queued[name].append(enqueued)
    baseline = median(rates["bare"])
    common = f"{count:,} updates (one per order) x {ctx.rounds} rounds, {CONCURRENCY} in flight"
    configs = {
        "celery": f"Celery {_version('celery')}, --pool=threads --concurrency={CONCURRENCY}, "
        f"requests {_version('requests')}",
        "arq": f"arq {_version('arq')}, max_jobs={CONCURRENCY}, aiohttp on uvloop",
    }
    rows = [
        Row(
            "peers",
            "ours: dispatcher over SQLite (as B1)",
            median(rates["ours"]),
            baseline,
            "/s",
            note=f"{common}; from the dispatcher's start until all are committed delivered; "
            f"CPU per delivery {median(ours_cpu) * 1e6:.0f} us (the bench process, every "
            "thread: dispatcher and store); baseline: bare aiohttp POST loop to the same receiver",
        )
    ]
    for name, (title, _, _) in PEERS.items():
        worker_us = median([c[0] for c in cpu[name]]) * 1e6
        redis_us = median([c[1] for c in cpu[name]]) * 1e6
        rows.append(
            Row(
                "peers",
                title,
                median(rates[name]),
                baseline,
                "/s",
                note=f"{configs[name]}; Redis {_redis_version()} without persistence; "
                f"{count:,} updates (one per order), 1 round, {CONCURRENCY} in flight; "
                "rate between 10 % and 90 % delivered; CPU per delivery: "
                f"worker {worker_us:.0f} us, Redis {redis_us:.0f} us; queued first at "
                f"{median(queued[name]):,.0f}/s",
            )
        )
    return rows


def _redis_version() -> str:
    try:
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return "?"


SCENARIO = Scenario("peers", "Celery + Redis and arq + Redis doing our job, vs bare loop", run)
