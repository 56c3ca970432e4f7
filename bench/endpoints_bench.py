"""B9: many endpoints: 10,000 tokens over 1,000 endpoints against one token and one endpoint.

The layout: 1,000 clients, each with one endpoint (its Postback URL and signing secret) and
ten access tokens on it: 10,000 tokens. Every endpoint has a **port of its own** (and a path
of its own, ``/hook/<n>``) on one :mod:`bench.sink` process listening on 1,000 ports, so the
dispatcher keeps a connection pool, a lane and a breaker per endpoint, as it would for 1,000
receivers. The baseline is the same run with one client, one token and one endpoint (a port of
the same sink process): B3's single-update shape and B1's delivery, side by side in each round.

* **ingest**: single-update requests, 64 in flight for a fixed time, round robin over the
  tokens (each update carries its token's client id), into ``serve`` on SQLite. As in B3
  nothing is delivered meanwhile: here the endpoints' URLs are paths on a black-holed port
  (``INGEST_FLAGS``), the same 1,000 endpoints and 10,000 tokens otherwise.
* **delivery**: 20,000 deliveries (one per order) committed first, round robin over the
  tokens, then ``serve`` starts on that database with B1's settings (64 in flight in all and
  per URL); the rate is taken between 10 % and 90 % delivered, as the receiver counts them,
  so start-up does not count; the notes add ``serve``'s CPU per delivery over that window.
* **RSS**: the peak resident set (VmHWM) of each ``serve`` process, the larger of the ingest
  and delivery runs, many endpoints against one.

The tokens are written into the database before ``serve`` starts (as B1's ``fill`` does; the
admin API would take longer to make 10,000), once per layout into a template that every run
copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import socket
import time
import uuid
from pathlib import Path

from bench.dispatch_bench import CONCURRENCY, enqueue_batched, token_delivery, valid_body
from bench.harness import (
    Context,
    Row,
    Scenario,
    median,
    peak_rss_mb,
    run_async,
)
from bench.ingest_bench import IngestResult, ingest_for, serve, update_body
from bench.watch import Window, counted, watch
from dhan_postback.service.registry import hash_secret, new_access_token, register_token
from dhan_postback.service.store import create_store
from dhan_postback.service.store.base import TokenRecord
from dhan_postback.signing import generate_secret

__all__ = ["SCENARIO", "Layout", "free_ports", "layout"]

B1_FLAGS = ["--max-in-flight", str(CONCURRENCY), "--max-in-flight-per-url", str(CONCURRENCY)]
B1_FLAGS += ["--retry-schedule", "0s,1s"]
INGEST_FLAGS = [*B1_FLAGS[:4], "--timeout", "1h", "--lease", "2h", "--shutdown-grace", "0s"]
"""While ingest is measured, the URLs are paths on a port that accepts and never answers: the
first 64 POSTs hang for the hour, the dispatcher claims up to its cap of held deliveries and
then waits, so delivery takes no CPU (B3 gets the same with a closed port and an open breaker,
which with 1,000 URLs would cost 1,000 failed attempts and breaker openings)."""


@dataclasses.dataclass(frozen=True)
class Access:
    """One token: the secret the client sends, its client, its endpoint's URL."""

    token: str
    client_id: str
    url: str


@dataclasses.dataclass(frozen=True)
class Layout:
    """Tokens spread over endpoints, an endpoint a port."""

    endpoints: int
    tokens: list[Access]

    @property
    def name(self) -> str:
        return f"{len(self.tokens):,} tokens / {self.endpoints:,} endpoints"


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports: all bound at once, so none comes twice (a
    thousand separate :func:`free_port` calls would repeat some)."""
    with contextlib.ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]


def layout(ports: list[int], tokens: int, endpoints: int | None = None) -> Layout:
    """``endpoints`` (one per port by default) clients and endpoints, at ``/hook/<n>`` on the
    ports in turn; ``tokens`` spread evenly over them."""
    count = len(ports) if endpoints is None else endpoints
    urls = [
        f"http://127.0.0.1:{ports[number % len(ports)]}/hook/{number}" for number in range(count)
    ]
    return Layout(
        len(urls),
        [
            Access(new_access_token(), f"2{number % len(urls):09d}", urls[number % len(urls)])
            for number in range(tokens)
        ],
    )


async def _register(path: Path, shape: Layout) -> None:
    """Write every token (and its endpoint, made by the first token of its client)."""
    store = create_store(f"sqlite:///{path}")
    await store.open()
    try:
        now = time.time()
        secrets = {access.url: generate_secret() for access in shape.tokens}

        async def one(access: Access) -> None:
            record = TokenRecord(
                hash_secret(access.token), access.client_id, access.url, None, now, now + 86400
            )
            await register_token(store, record, secrets[access.url])

        for start in range(0, len(shape.tokens), 500):
            await asyncio.gather(*(one(access) for access in shape.tokens[start : start + 500]))
    finally:
        await store.close()


async def _enqueue(path: Path, shape: Layout, count: int, body: bytes) -> None:
    """``count`` deliveries, one per order, round robin over the tokens."""
    store = create_store(f"sqlite:///{path}")
    await store.open()
    try:
        now = time.time()
        accesses = (shape.tokens[number % len(shape.tokens)] for number in range(count))
        await enqueue_batched(
            store,
            (
                token_delivery(
                    access.client_id,
                    hash_secret(access.token),
                    access.url,
                    f"order-{number}",
                    body,
                    now,
                )
                for number, access in enumerate(accesses)
            ),
        )
    finally:
        await store.close()


def _copy(template: Path, directory: Path) -> Path:
    """A fresh copy of a closed database (its WAL, if any, alongside)."""
    target = directory / "service.db"
    for suffix in ("", "-wal"):
        source = template.with_name(template.name + suffix)
        if source.exists():
            shutil.copyfile(source, target.with_name(target.name + suffix))
    return target


@dataclasses.dataclass
class Result:
    ingest: IngestResult
    delivery: Window
    peak_mb: tuple[float, float]
    """Peak RSS of the ingest serve and of the delivery serve."""


@dataclasses.dataclass(frozen=True)
class Shape:
    """One layout two ways: URLs that never answer (to measure ingest), and on the sink."""

    closed: Layout
    """URLs that never answer: paths on the black-holed port."""
    open: Layout
    closed_template: Path
    open_template: Path


def shape(ctx: Context, name: str, hole: int, listening: list[int], tokens: int) -> Shape:
    """The layouts and their template databases, tokens registered."""
    result = Shape(
        layout([hole], tokens, len(listening)),
        layout(listening, tokens),
        ctx.scratch(f"b9-{name}-closed") / "service.db",
        ctx.scratch(f"b9-{name}-open") / "service.db",
    )
    run_async(_register(result.closed_template, result.closed))
    run_async(_register(result.open_template, result.open))
    return result


def measure(
    ctx: Context, name: str, shape: Shape, sink: str, count: int, duration: float
) -> Result:
    """One ingest run and one delivery run of ``shape``, each on a fresh copy of its template."""
    prefix = uuid.uuid4().hex[:8]
    tokens = shape.closed.tokens
    bodies = [
        update_body(f"{prefix}-{number}", tokens[number % len(tokens)].client_id)
        for number in range(max(4096, len(tokens)))
    ]
    database = _copy(shape.closed_template, ctx.scratch(f"b9-{name}-ingest"))
    with serve(ctx, f"b9-{name}-ingest", *INGEST_FLAGS, database=database) as service:
        ingested = run_async(
            ingest_for(
                service,
                [access.token for access in tokens],
                bodies,
                1,
                CONCURRENCY,
                duration,
                pid=service.pid,
            )
        )
        ingest_peak = peak_rss_mb(service.pid)
    database = _copy(shape.open_template, ctx.scratch(f"b9-{name}-deliver"))
    run_async(_enqueue(database, shape.open, count, valid_body()))
    start = counted(sink)
    with serve(ctx, f"b9-{name}-deliver", *B1_FLAGS, database=database) as service:
        window = run_async(watch(sink, count, [service.pid], start=start))
        delivery_peak = peak_rss_mb(service.pid)
    return Result(ingested, window, (ingest_peak, delivery_peak))


def run(ctx: Context) -> list[Row]:
    """Each round: one endpoint, then many, each ingest and delivery on fresh copies."""
    endpoints = ctx.pick(200, 1_000)
    tokens = ctx.pick(2_000, 10_000)
    count = ctx.pick(4_000, 20_000)
    duration = ctx.pick(2.0, 5.0)
    ports = free_ports(endpoints + 1)
    ports, hole = ports[:-1], ports[-1]
    sink = f"http://127.0.0.1:{ports[0]}"
    args = ["-m", "bench.sink", "--blackhole", str(hole)]
    for port in ports:
        args += ["--port", str(port)]
    results: dict[str, list[Result]] = {"one": [], "many": []}
    # the sink takes its ports at once: held free through the minute of registering tokens,
    # some would be taken meanwhile by other programs' outgoing connections
    with ctx.spawn(args, health_url=sink + "/stats", log_name="b9-sink"):
        shapes = {
            "one": shape(ctx, "one", hole, ports[:1], 1),
            "many": shape(ctx, "many", hole, ports, tokens),
        }
        for _ in range(ctx.rounds):
            for name, both in shapes.items():
                results[name].append(measure(ctx, name, both, sink, count, duration))
    one, many = results["one"], results["many"]

    def by_round(values: list[float], unit: str = "") -> str:
        return ", ".join(f"{value:,.0f}{unit}" for value in values)

    ingest = [r.ingest.updates_per_second for r in many], [r.ingest.updates_per_second for r in one]
    ingest_cpu = [
        median([(r.ingest.cpu_per_update or 0.0) * 1e6 for r in results[name]])
        for name in ("many", "one")
    ]
    delivery = [r.delivery.rate for r in many], [r.delivery.rate for r in one]
    cpu = [r.delivery.cpu_per_delivery[0] * 1e6 for r in many]
    cpu_one = [r.delivery.cpu_per_delivery[0] * 1e6 for r in one]
    peak = [max(r.peak_mb) for r in many], [max(r.peak_mb) for r in one]
    failures = sum(r.ingest.failures for r in many + one)
    where = (
        f"{shapes['many'].open.name} vs 1 token / 1 endpoint, median of {ctx.rounds} rounds; "
        "the endpoints are paths on one port that never answers"
    )
    rows = [
        Row(
            "B9",
            "many endpoints: ingest, 1 per request, 64 in flight",
            median(ingest[0]),
            median(ingest[1]),
            "/s",
            target=">= 0.9x",
            met=median(ingest[0]) >= 0.9 * median(ingest[1]),
            note=f"{where}; {duration:.0f} s each, round robin over the tokens; "
            f"many by round {by_round(ingest[0])}, one {by_round(ingest[1])}; "
            f"{failures} failed; serve CPU per update {ingest_cpu[0]:.0f} us many, "
            f"{ingest_cpu[1]:.0f} us one; baseline: B3's single-update shape",
        ),
        Row(
            "B9",
            f"many endpoints: delivery, {count:,} one per order",
            median(delivery[0]),
            median(delivery[1]),
            "/s",
            target=">= 0.9x",
            met=median(delivery[0]) >= 0.9 * median(delivery[1]),
            note="each endpoint a port (and path) of its own on one sink process; serve with "
            "B1's settings on a database filled first, rate between 10 % and 90 % delivered; "
            f"many by round {by_round(delivery[0])}, one {by_round(delivery[1])}; "
            f"serve CPU per delivery {median(cpu):.0f} us many, {median(cpu_one):.0f} us one; "
            "baseline: B1's delivery to one endpoint",
        ),
        Row(
            "B9",
            "many endpoints: peak RSS of serve",
            median(peak[0]),
            median(peak[1]),
            "MB",
            target="<= 1.5x",
            met=median(peak[0]) <= 1.5 * median(peak[1]),
            note="VmHWM, the larger of the ingest and the delivery serve; many by round "
            f"{by_round(peak[0], ' MB')}, one {by_round(peak[1], ' MB')}",
            higher_is_better=False,
        ),
    ]
    return rows


SCENARIO = Scenario("B9", "many endpoints: 10,000 tokens over 1,000 endpoints vs one", run)
