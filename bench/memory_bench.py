"""B5: memory of ``serve`` while a large backlog is pending, then the rate it drains at.

The token's Postback URL is a loopback port nobody listens on, so every delivery stays
pending (the first attempts fail, the breaker opens). The backlog goes in by batched ingest
(1,000 updates a request, each its own order); RSS (VmRSS in ``/proc/<pid>/status``) is sampled
at every tenth of it. Then :mod:`bench.sink` starts on that port and the delivered count is
watched for a bounded time: the drain rate is deliveries per second from the moment the
receiver was up. Baseline: the RSS of the same process idle (after start-up, before ingest).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.request
import uuid

import aiohttp

from bench.harness import Context, Row, Scenario, free_port, rss_mb, run_async
from bench.ingest_bench import Service, batch_body, create_token, serve

__all__ = ["SCENARIO"]

BATCH = 1000
LIMIT_MB = 300.0


async def fill(service: Service, hook: str, total: int, samples: list[tuple[int, float]]) -> float:
    """Ingest ``total`` updates (4 requests in flight), sampling RSS every tenth; updates/s."""
    step = max(BATCH, total // 10)
    prefix = uuid.uuid4().hex[:8]
    batches = itertools.count()
    done = 0
    connector = aiohttp.TCPConnector(limit=4)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        token = await create_token(session, service, hook)
        headers = {"access-token": token, "Content-Type": "application/json"}

        async def worker() -> None:
            nonlocal done
            while (number := next(batches)) * BATCH < total:
                first = number * BATCH
                body = batch_body(f"{prefix}-{first + index}" for index in range(BATCH))
                async with session.post(
                    service.url + "/v2/order-updates", data=body, headers=headers
                ) as response:
                    await response.read()
                    if response.status != 202:
                        raise RuntimeError(f"ingest: {response.status}")
                before, done = done, done + BATCH
                if done // step != before // step:
                    samples.append((done, rss_mb(service.pid)))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(4)))
        return done / (time.perf_counter() - started)


def delivered(sink: str) -> int:
    with urllib.request.urlopen(sink + "/stats", timeout=5) as response:
        count: int = json.load(response)["count"]
        return count


def run(ctx: Context) -> list[Row]:
    total = ctx.pick(100_000, 1_000_000)
    window = ctx.pick(10.0, 40.0)
    port = free_port()
    hook = f"http://127.0.0.1:{port}/hook"
    schedule = ",".join(["0s"] + ["1s"] * 30)
    flags = ["--retry-schedule", schedule, "--breaker-cooldown", "1s"]
    flags += ["--max-in-flight-per-url", "64"]
    samples: list[tuple[int, float]] = []
    with serve(ctx, "b5", *flags) as service:
        time.sleep(1.0)
        idle = rss_mb(service.pid)
        samples.append((0, idle))
        ingest_rate = run_async(fill(service, hook, total, samples))
        time.sleep(1.0)
        samples.append((total, rss_mb(service.pid)))
        sink = f"http://127.0.0.1:{port}"
        with ctx.spawn(
            ["-m", "bench.sink", "--port", str(port)], health_url=sink + "/stats", log_name="b5"
        ):
            up = time.monotonic()
            count = 0
            draining_peak = 0.0
            while time.monotonic() - up < window and count < total:
                time.sleep(0.5)
                count = delivered(sink)
                draining_peak = max(draining_peak, rss_mb(service.pid))
            drain_rate = count / (time.monotonic() - up)
    peak = max(mb for _, mb in samples)
    half = min(samples, key=lambda sample: abs(sample[0] - total // 2))[1]
    flat = samples[-1][1] <= 1.1 * half + 5
    curve = ", ".join(f"{n // 1000}k: {mb:.0f}" for n, mb in samples[:: max(1, len(samples) // 6)])
    return [
        Row(
            "B5",
            f"RSS with {total:,} pending",
            peak,
            idle,
            "MB",
            target=f"< {LIMIT_MB:.0f} MB, flat",
            met=peak < LIMIT_MB and flat,
            note=f"baseline: idle serve; MB by backlog {curve}, end {samples[-1][1]:.0f} "
            f"({'flat' if flat else 'growing'}); ingest {ingest_rate:,.0f}/s",
            higher_is_better=False,
        ),
        Row(
            "B5",
            "drain rate once the receiver is up",
            drain_rate,
            None,
            "/s",
            note=f"{count:,} delivered in the first {window:.0f} s (incl. breaker recovery); "
            f"RSS while draining up to {draining_peak:.0f} MB",
        ),
    ]


SCENARIO = Scenario("B5", "memory with a large backlog pending, then the drain rate", run)
