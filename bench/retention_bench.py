"""B8: a month in an hour. Retention set to seconds while updates stream at a steady rate.

``serve`` (SQLite) gets single-order updates in small batches on a fixed schedule (open loop,
as in B2) for several minutes; :mod:`bench.sink` with ``--record`` notes when each order
arrives. Every ``window`` seconds the run samples the database's size on disk (file + WAL),
the service's RSS, and afterwards the p50 and p99 from submit to receipt of the updates
submitted in that window. Ours: retention in seconds (delivered and dead kept 20 s, pruned
every 5 s; 10 s and 2 s under ``--quick``), so a four-minute run goes through twelve
retention periods and about fifty pruning rounds, each deleting as much as it has to (a
month with the defaults is four retention periods and 8,640 rounds).
Baseline: the same stream into a service that never prunes (``--prune-interval 0s``), run
at the same time as ours (each with its own receiver), so that whatever else the machine is
doing weighs on both alike.
The rate is modest (100 updates/s for each service) so that both keep up even on a shared 2-core
machine: the question is whether anything grows or slows over time, not the top speed
(B2 and B3 measure that).

Flat means the last window is within 25 % (plus 2 MB of slack) of the window 40 % of the
way in, once retention has reached its steady state. Latency on a shared machine swings with
whatever else runs, alike for both runs: it is judged window by window as ours / baseline,
whose median from that window on must stay within 1.2. After the baseline run, its full
database is opened by a ``serve`` with retention set to nothing: the note gives the file's
size before and after that pruning, and how long it took (incremental vacuum shrinks it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
import urllib.request
import uuid
from pathlib import Path

import aiohttp

from bench.harness import (
    Context,
    Row,
    Scenario,
    free_port,
    median,
    percentile,
    rss_mb,
    run_async,
)
from bench.ingest_bench import CLIENT_ID, Service, batch_body, create_token, serve

__all__ = ["SCENARIO"]

BATCH = 20
"""Updates per ingest request (each its own order)."""
NO_PRUNING = ["--prune-interval", "0s"]


def retention(keep: float, every: float) -> list[str]:
    return [
        "--retain-delivered", f"{keep:g}s",
        "--retain-dead", f"{keep:g}s",
        "--prune-interval", f"{every:g}s",
    ]  # fmt: skip


@dataclasses.dataclass
class Sample:
    """One window of a run: when it started (s into the run), size, RSS, latencies."""

    at: float
    db_mb: float
    rss_mb: float
    latencies: list[float] = dataclasses.field(default_factory=list)

    @property
    def p99_ms(self) -> float:
        return percentile(sorted(self.latencies), 0.99) * 1000

    @property
    def p50_ms(self) -> float:
        return percentile(sorted(self.latencies), 0.5) * 1000


def db_mb(path: Path) -> float:
    """The database's bytes on disk in MiB: the file and its WAL."""
    total = 0
    for suffix in ("", "-wal"):
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            total += candidate.stat().st_size
    return total / 2**20


def metric(service: Service, name: str, kind: str) -> float:
    with urllib.request.urlopen(service.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(rf'^{name}\{{kind="{kind}"\}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def stream(
    service: Service, db: Path, sink: str, rate: float, duration: float, window: float
) -> tuple[list[Sample], int]:
    """Submit ``rate`` updates/s for ``duration`` s; sample every ``window`` s; then wait for
    the arrivals and put each latency in the window of its submit. Returns the samples and
    how many updates never arrived."""
    connector = aiohttp.TCPConnector(limit=64, limit_per_host=64)
    prefix = uuid.uuid4().hex[:8]
    submitted: dict[str, float] = {}
    samples: list[Sample] = []
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        token = await create_token(session, service, sink + "/hook", CLIENT_ID)
        headers = {"access-token": token, "Content-Type": "application/json"}

        async def submit(order_ids: list[str]) -> None:
            async with session.post(
                service.url + "/v2/order-updates", data=batch_body(order_ids), headers=headers
            ) as response:
                await response.read()
                if response.status != 202:
                    raise RuntimeError(f"ingest: {response.status}")

        tasks = []
        started = time.monotonic()
        interval = BATCH / rate
        for number in range(int(duration * rate / BATCH)):
            due = started + number * interval
            if due - started >= len(samples) * window:
                samples.append(Sample(due - started, db_mb(db), rss_mb(service.pid)))
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            order_ids = [f"{prefix}-{number}-{index}" for index in range(BATCH)]
            now = time.monotonic()
            submitted.update(dict.fromkeys(order_ids, now))
            tasks.append(asyncio.create_task(submit(order_ids)))
        await asyncio.gather(*tasks)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            async with session.get(sink + "/stats") as response:
                if (await response.json())["count"] >= len(submitted):
                    break
            await asyncio.sleep(0.2)
        async with session.get(sink + "/arrivals") as response:
            arrivals: dict[str, float] = await response.json()
    for order_id, sent in submitted.items():
        if order_id in arrivals:
            samples[min(int((sent - started) // window), len(samples) - 1)].latencies.append(
                arrivals[order_id] - sent
            )
    return samples, len(submitted) - sum(len(sample.latencies) for sample in samples)


def flat(first: float, last: float, slack: float) -> bool:
    return last <= 1.25 * first + slack


def prune_all(ctx: Context, db: Path) -> tuple[float, float, float, float]:
    """Open ``db`` with retention set to nothing; (MB before, MB after, seconds, pruned)."""
    before = db_mb(db)
    flags = ["--retain-delivered", "0s", "--prune-interval", "1s"]
    started = time.monotonic()
    with serve(ctx, "b8-prune-all", *flags, database=db) as service:
        deadline = time.monotonic() + 300
        pruned = last = -1.0
        while time.monotonic() < deadline:
            time.sleep(1.0)
            pruned, last = metric(service, "dhan_postback_pruned_total", "delivered"), pruned
            if pruned > 0 and pruned == last:
                break  # a whole prune interval without anything more to prune
        took = time.monotonic() - started
    return before, db_mb(db), took, pruned


def run(ctx: Context) -> list[Row]:
    rate = ctx.pick(100.0, 100.0)
    duration = ctx.pick(60.0, 240.0)
    window = ctx.pick(10.0, 20.0)
    keep, every = ctx.pick((10.0, 2.0), (20.0, 5.0))
    results: dict[str, tuple[list[Sample], int, Path, float]] = {}
    runs = (("pruning", retention(keep, every)), ("no pruning", NO_PRUNING))
    with contextlib.ExitStack() as stack:
        started = []
        for name, flags in runs:
            port = free_port()
            sink = f"http://127.0.0.1:{port}"
            db = ctx.scratch("b8") / "service.db"
            stack.enter_context(
                ctx.spawn(
                    ["-m", "bench.sink", "--port", str(port), "--record"],
                    health_url=sink + "/stats",
                    log_name="b8-sink",
                )
            )
            service = stack.enter_context(serve(ctx, "b8", *flags, database=db))
            started.append((name, service, db, sink))

        async def both() -> list[tuple[list[Sample], int]]:
            return await asyncio.gather(
                *(
                    stream(service, db, sink, rate, duration, window)
                    for _, service, db, sink in started
                )
            )

        for (name, service, db, _), (samples, lost) in zip(started, run_async(both()), strict=True):
            pruned = metric(service, "dhan_postback_pruned_total", "delivered")
            results[name] = (samples, lost, db, pruned)
    before, after, took, pruned_all = prune_all(ctx, results["no pruning"][2])
    ours, ours_lost, _, ours_pruned = results["pruning"]
    base, base_lost, _, _ = results["no pruning"]
    sent = int(duration * rate / BATCH) * BATCH
    reference = int(len(ours) * 0.4)

    def curve(samples: list[Sample], attribute: str) -> str:
        return ", ".join(
            f"{sample.at:.0f}s: {getattr(sample, attribute):.1f}" for sample in samples
        )

    common = f"{sent:,} updates at {rate:.0f}/s for {duration:.0f} s, windows of {window:.0f} s"
    rows = []
    for measure, attribute in (("DB size on disk", "db_mb"), ("RSS of serve", "rss_mb")):
        first = getattr(ours[reference], attribute)
        last = getattr(ours[-1], attribute)
        rows.append(
            Row(
                "B8",
                f"{measure}, last window",
                last,
                getattr(base[-1], attribute),
                "MB",
                target="flat",
                met=flat(first, last, 2.0),
                note=f"ours by window: {curve(ours, attribute)}; baseline (no pruning): "
                f"{curve(base, attribute)}",
                higher_is_better=False,
            )
        )
    for name, attribute in (("p50", "p50_ms"), ("p99", "p99_ms")):
        # Latency on a shared machine swings with its load, alike for both runs (they run
        # at the same time): judged window by window against the baseline, once pruning
        # has reached its steady state.
        ratios = [
            getattr(a, attribute) / getattr(b, attribute)
            for a, b in zip(ours, base, strict=True)
            if getattr(b, attribute) > 0
        ]
        steady = median(ratios[reference:])
        rows.append(
            Row(
                "B8",
                f"submit -> received {name}, median of the windows",
                median([getattr(sample, attribute) for sample in ours]),
                median([getattr(sample, attribute) for sample in base]),
                "ms",
                target="<= 1.2x baseline, window by window",
                met=steady <= 1.2,
                note=f"ours / baseline by window: {', '.join(f'{r:.2f}' for r in ratios)} "
                f"(median from {ours[reference].at:.0f} s on: {steady:.2f}); ours by window: "
                f"{curve(ours, attribute)}; baseline: {curve(base, attribute)}",
                higher_is_better=False,
            )
        )
    rows[0].note = (
        f"{common}; retention {keep:g} s, pruned every {every:g} s; "
        f"{ours_pruned:,.0f} delivered pruned, "
        f"{ours_lost + base_lost} not received. " + rows[0].note
    )
    rows.append(
        Row(
            "B8",
            "the baseline's database, pruned on open",
            after,
            before,
            "MB",
            note=f"{pruned_all:,.0f} delivered deliveries pruned and the file shrunk by "
            f"incremental vacuum from {before:.1f} MB to {after:.1f} MB in {took:.0f} s "
            "(start included)",
            higher_is_better=False,
        )
    )
    return rows


SCENARIO = Scenario("B8", "a month in an hour: retention in seconds under a steady stream", run)
