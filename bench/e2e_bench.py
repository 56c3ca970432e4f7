"""E2E: end to end through ``dhan-postback serve``: orders in and signed POSTs out, at once.

One ``serve`` on SQLite with B1's settings (64 POSTs in flight in all and per URL), one
token whose Postback URL is :mod:`bench.sink` (its own process). The load client sends the
simulator's orders (a trading day's mix of kinds, several updates each: placed, partly
filled, modified, traded, cancelled...), one update per request with 64 requests in
flight, while ``serve`` delivers them: each order's updates go in their order, the next
once the previous is acknowledged, as a broker posts them (the orders are dealt to 64
streams). So every update waits for its predecessor's delivery to be committed before it
can go, and ingest competes with delivery for the same process and database.

Two shapes of ingest: one update per request (as the broker posts them), and a stream's
next 100 updates per request (an array, committed in one transaction in its order: what a
platform in front of the service can send). The rate is delivered/s as the receiver counts
them, between 10 % and 90 % of the updates; the notes add the ingest rate over the same run
and ``serve``'s CPU per update (ingest and delivery together). Baseline: B1's bare aiohttp
POST loop (64 in flight, no store, no signing) to the same receiver, in the same round. A
fresh ``serve`` and database each round and shape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Sequence

import aiohttp

from bench.dispatch_bench import CONCURRENCY, bare, valid_body
from bench.endpoints_bench import B1_FLAGS
from bench.harness import Context, Row, Scenario, free_port, median, run_async
from bench.ingest_bench import CLIENT_ID, Service, create_token, serve
from bench.watch import Window, counted, watch
from dhan_postback.payload import dumps
from dhan_postback.simulator import Simulator, interleave

__all__ = ["SCENARIO", "order_streams"]


def order_streams(count: int, streams: int, seed: int = 19) -> tuple[list[list[bytes]], int]:
    """At least ``count`` updates of whole simulated orders of one client, in the time order
    of a trading day, dealt to ``streams`` lists: all of an order's updates in one list, in
    their order. Also how many orders."""
    simulator = Simulator(seed, clients=(CLIENT_ID,))
    orders = []
    total = 0
    while total < count:
        batch = simulator.orders(256)
        orders.extend(batch)
        total += sum(len(order.updates) for order in batch)
    dealt: dict[str, int] = {}
    result: list[list[bytes]] = [[] for _ in range(streams)]
    for update in interleave(orders, random.Random(seed)):
        stream = dealt.setdefault(update.order_id, len(dealt) % streams)
        result[stream].append(dumps(update))
    return result, len(dealt)


@dataclasses.dataclass(frozen=True)
class Result:
    delivered: Window
    ingest_rate: float
    updates: int
    failures: int


async def _submit(
    service: Service, token: str, streams: Sequence[list[bytes]], batch: int
) -> tuple[float, int]:
    """Send every stream's updates in order, ``batch`` to a request (an array when more than
    one), the streams side by side; (seconds, failures)."""
    connector = aiohttp.TCPConnector(limit=len(streams), limit_per_host=len(streams))
    headers = {"access-token": token, "Content-Type": "application/json"}
    failures = 0
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def one_stream(updates: list[bytes]) -> None:
            nonlocal failures
            bodies = updates
            if batch > 1:
                chunks = (updates[at : at + batch] for at in range(0, len(updates), batch))
                bodies = [b"[" + b",".join(chunk) + b"]" for chunk in chunks]
            for body in bodies:
                async with session.post(
                    service.url + "/v2/order-updates", data=body, headers=headers
                ) as response:
                    await response.read()
                    failures += response.status != 202

        started = time.perf_counter()
        await asyncio.gather(*(one_stream(bodies) for bodies in streams))
        return time.perf_counter() - started, failures


async def _round(service: Service, sink: str, streams: Sequence[list[bytes]], batch: int) -> Result:
    async with aiohttp.ClientSession() as session:
        token = await create_token(session, service, sink + "/hook")
    total = sum(len(bodies) for bodies in streams)
    start = counted(sink)
    watching = asyncio.create_task(watch(sink, total, [service.pid], start=start))
    elapsed, failures = await _submit(service, token, streams, batch)
    window = await watching
    return Result(window, total / elapsed, total, failures)


BATCHES = (1, 100)


def run(ctx: Context) -> list[Row]:
    """Each round: the bare loop, then a fresh serve taking and delivering the orders, for
    each shape of ingest."""
    streams, orders = order_streams(ctx.pick(4_000, 20_000), CONCURRENCY)
    total = sum(len(bodies) for bodies in streams)
    port = free_port()
    sink = f"http://127.0.0.1:{port}"
    body = valid_body()
    bare_rates: list[float] = []
    results: dict[int, list[Result]] = {batch: [] for batch in BATCHES}
    with ctx.spawn(
        ["-m", "bench.sink", "--port", str(port)], health_url=sink + "/stats", log_name="e2e-sink"
    ):
        run_async(bare(sink + "/hook", 2_000, CONCURRENCY, body))  # warm the receiver up
        for round_number in range(ctx.rounds):
            wall, _ = run_async(bare(sink + "/hook", total, CONCURRENCY, body))
            bare_rates.append(total / wall)
            for batch in BATCHES:
                with serve(ctx, f"e2e-{batch}-{round_number}", *B1_FLAGS) as service:
                    results[batch].append(run_async(_round(service, sink, streams, batch)))
    baseline = median(bare_rates)
    rows = []
    for batch in BATCHES:
        rates = [result.delivered.rate for result in results[batch]]
        ours = median(rates)
        ingest = median([result.ingest_rate for result in results[batch]])
        cpu = median([result.delivered.cpu_per_delivery[0] * 1e6 for result in results[batch]])
        failures = sum(result.failures for result in results[batch])
        shape = (
            "one update per request"
            if batch == 1
            else f"a stream's next {batch} updates per request"
        )
        rows.append(
            Row(
                "E2E",
                f"end to end through serve, ingest and delivery at once: {shape}",
                ours,
                baseline,
                "/s",
                target=">= 0.5x" if batch == 1 else "",
                met=ours >= 0.5 * baseline if batch == 1 else None,
                note=f"the simulator's orders: {total:,} updates of {orders:,} orders, "
                f"{CONCURRENCY} requests in flight (an order's next update once its last is "
                f"acknowledged), delivered by serve with {CONCURRENCY} in flight, SQLite; "
                f"median of {ctx.rounds} rounds, rate between 10 % and 90 % delivered; ours by "
                "round "
                + ", ".join(f"{rate:,.0f}" for rate in rates)
                + f"; ingest {ingest:,.0f}/s over the same runs, {failures} failed; serve CPU "
                f"per update (ingest and delivery) {cpu:.0f} us; baseline: B1's bare POST loop "
                "to the same receiver",
            )
        )
    return rows


SCENARIO = Scenario("E2E", "end to end through serve: multi-update orders in and out at once", run)
