"""B3: durable ingest into ``dhan-postback serve`` on SQLite, and the service helpers B2/B5/B6 use.

For a fixed time the client keeps requests in flight, each carrying ``batch`` updates with
distinct order ids; every 202 means the updates were committed (WAL, synchronous=FULL).
Two shapes: 1,000 updates a request (4 in flight) and single updates (64 in flight).

Baseline: stdlib ``sqlite3`` inserting delivery rows of the same updates into the service's
own schema (``sql/sqlite.sql``: its settings and tables, indexes included) in one transaction
(WAL, synchronous=FULL) on the same disk: the storage floor, without HTTP, parsing or group
commit scheduling.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import Context, Row, Scenario, cpu_seconds, free_port, median, run_async
from dhan_postback.service.store.queries import load_queries

__all__ = [
    "SCENARIO",
    "Service",
    "batch_body",
    "create_token",
    "ingest_for",
    "serve",
    "update_body",
]

CLIENT_ID = "1000000003"
EXAMPLE: dict[str, Any] = {
    "dhanClientId": CLIENT_ID,
    "orderId": "0",
    "correlationId": "bench",
    "orderStatus": "PENDING",
    "transactionType": "BUY",
    "exchangeSegment": "NSE_EQ",
    "productType": "INTRADAY",
    "orderType": "LIMIT",
    "validity": "DAY",
    "tradingSymbol": "INFY",
    "securityId": "1594",
    "quantity": 5,
    "disclosedQuantity": 0,
    "price": 1520.5,
    "triggerPrice": 0.0,
    "afterMarketOrder": False,
    "boProfitValue": 0.0,
    "boStopLossValue": 0.0,
    "legName": None,
    "createTime": "2024-05-02 09:15:01",
    "updateTime": "2024-05-02 09:15:01",
    "exchangeTime": "2024-05-02 09:15:01",
    "drvExpiryDate": None,
    "drvOptionType": None,
    "drvStrikePrice": 0.0,
    "omsErrorCode": None,
    "omsErrorDescription": None,
    "filled_qty": 0,
    "algoId": None,
}
_HEAD, _TAIL = json.dumps({**EXAMPLE, "orderId": "@"}).encode().split(b"@")
_CLIENT_HEAD, _CLIENT_TAIL = _HEAD.split(CLIENT_ID.encode(), 1)


def update_body(order_id: str, client_id: str = CLIENT_ID) -> bytes:
    """One update as JSON, cheaply: the example with this order id (and client id)."""
    head = _HEAD if client_id == CLIENT_ID else _CLIENT_HEAD + client_id.encode() + _CLIENT_TAIL
    return head + order_id.encode() + _TAIL


def batch_body(order_ids: Iterable[str]) -> bytes:
    """A JSON array of updates, one per order id."""
    return b"[" + b",".join(update_body(order_id) for order_id in order_ids) + b"]"


@dataclass
class Service:
    """A running ``serve``: its base URL, admin key and process id."""

    url: str
    admin_key: str
    pid: int


@contextlib.contextmanager
def serve(ctx: Context, name: str, *flags: str, database: Path | None = None) -> Iterator[Service]:
    """``dhan-postback serve`` on a fresh SQLite file (or ``database``) and a free port,
    loopback URLs allowed."""
    port = free_port()
    admin_key = secrets.token_urlsafe(16)
    database = database or ctx.scratch(name) / "service.db"
    args = ["-m", "dhan_postback", "serve", "--port", str(port), "--allow-loopback"]
    args += ["--db", f"sqlite:///{database}", *flags]
    url = f"http://127.0.0.1:{port}"
    with ctx.spawn(
        args,
        health_url=url + "/healthz",
        env={"DHAN_POSTBACK_ADMIN_KEY": admin_key},
        log_name=f"{name}-serve",
    ) as process:
        yield Service(url, admin_key, process.pid)


async def create_token(
    session: aiohttp.ClientSession, service: Service, postback_url: str, client_id: str = CLIENT_ID
) -> str:
    """A new access token whose updates go to ``postback_url``."""
    async with session.post(
        service.url + "/v2/access-tokens",
        headers={"admin-key": service.admin_key},
        json={"dhanClientId": client_id, "postbackUrl": postback_url},
    ) as response:
        if response.status != 201:
            raise RuntimeError(f"token: {response.status} {await response.text()}")
        token: str = (await response.json())["accessToken"]
        return token


@dataclass
class IngestResult:
    updates_per_second: float
    requests: int
    failures: int
    cpu_per_update: float | None = None
    """CPU seconds of the service per update acknowledged, when its pid was given."""


async def ingest_for(
    service: Service,
    token: str | list[str],
    bodies: list[bytes],
    batch: int,
    concurrency: int,
    duration: float,
    pid: int | None = None,
) -> IngestResult:
    """Keep ``concurrency`` ingest requests in flight for ``duration`` seconds (after a short
    warm-up), cycling through ``bodies``; count the updates acknowledged with 202. With a
    list of tokens, body ``i`` goes with token ``i % len(tokens)``; with the service's
    ``pid``, its CPU per update over the same time."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    tokens = [token] if isinstance(token, str) else token
    headers = [
        {"access-token": tokens[index % len(tokens)], "Content-Type": "application/json"}
        for index in range(len(bodies))
    ]
    acknowledged = requests = failures = 0
    next_body = itertools.count()
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def worker(deadline: float) -> None:
            nonlocal acknowledged, requests, failures
            while time.perf_counter() < deadline:
                index = next(next_body) % len(bodies)
                async with session.post(
                    service.url + "/v2/order-updates", data=bodies[index], headers=headers[index]
                ) as response:
                    await response.read()
                    requests += 1
                    if response.status == 202:
                        acknowledged += batch
                    else:
                        failures += 1

        warm = time.perf_counter() + min(1.0, duration / 5)
        await asyncio.gather(*(worker(warm) for _ in range(concurrency)))
        acknowledged = requests = failures = 0
        cpu = cpu_seconds(pid) if pid else 0.0
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + duration) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        used = (cpu_seconds(pid) - cpu) / max(1, acknowledged) if pid else None
    return IngestResult(acknowledged / elapsed, requests, failures, used)


def sqlite_insert_rate(directory: Path, rows: int) -> float:
    """Rows/s inserting ``rows`` deliveries into the service's schema in one transaction."""
    queries = load_queries("sqlite")
    connection = sqlite3.connect(directory / "baseline.db", isolation_level=None)
    try:
        connection.executescript(queries["connection_settings"])  # WAL, synchronous=FULL
        connection.executescript(queries["migration_1"])
        now = time.time()
        values = [
            (
                f"msg_{uuid.uuid4().hex}",
                CLIENT_ID,
                "bench-token",
                "token",
                "http://127.0.0.1:9/hook",
                str(number),
                update_body(str(number)),
                now,
                now,
            )
            for number in range(rows)
        ]
        started = time.perf_counter()
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO deliveries (id, dhan_client_id, token_hash, target, url, order_id,"
            " payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )
        connection.execute("COMMIT")
        return rows / (time.perf_counter() - started)
    finally:
        connection.close()


async def _measure_shape(
    service: Service, batch: int, concurrency: int, duration: float, rounds: int
) -> list[IngestResult]:
    """``rounds`` timed runs of one request shape against one service."""
    # the Postback URL is a closed port: nothing is delivered, so delivery takes no CPU here
    closed = f"http://127.0.0.1:{free_port()}/hook"
    async with aiohttp.ClientSession() as session:
        token = await create_token(session, service, closed)
    prefix = uuid.uuid4().hex[:8]
    count = 2 * concurrency if batch > 1 else 4096
    numbers = iter(range(count * batch))
    bodies = [
        batch_body(f"{prefix}-{next(numbers)}" for _ in range(batch))
        if batch > 1
        else update_body(f"{prefix}-{next(numbers)}")
        for _ in range(count)
    ]
    return [
        await ingest_for(service, token, bodies, batch, concurrency, duration, pid=service.pid)
        for _ in range(rounds)
    ]


def run(ctx: Context) -> list[Row]:
    """Batched and single-update ingest rates (median of rounds), next to raw SQLite inserts."""
    duration = ctx.pick(2.0, 5.0)
    shapes = [(1000, 4, 20_000.0), (1, 64, None)]
    results: dict[int, list[IngestResult]] = {}
    for batch, concurrency, _ in shapes:
        with serve(ctx, f"b3-{batch}", "--breaker-cooldown", "1h") as service:
            results[batch] = run_async(
                _measure_shape(service, batch, concurrency, duration, ctx.rounds)
            )
    baseline = median(
        [
            sqlite_insert_rate(ctx.scratch("b3-sqlite"), ctx.pick(30_000, 100_000))
            for _ in range(ctx.rounds)
        ]
    )
    rows = []
    for batch, concurrency, target in shapes:
        rates = [result.updates_per_second for result in results[batch]]
        ours = median(rates)
        failures = sum(result.failures for result in results[batch])
        cpu = median([(result.cpu_per_update or 0.0) * 1e6 for result in results[batch]])
        rows.append(
            Row(
                "B3",
                f"ingest, {batch:,} per request, {concurrency} in flight",
                ours,
                baseline,
                "/s",
                target=f">= {target:,.0f}/s" if target else "",
                met=ours >= target if target else None,
                note=f"median of {ctx.rounds} runs of {duration:.0f} s "
                f"({', '.join(f'{rate:,.0f}' for rate in rates)}), {failures} failed; "
                f"serve CPU per update {cpu:.0f} us; "
                "baseline: sqlite3 executemany of the same rows, one transaction",
            )
        )
    return rows


SCENARIO = Scenario("B3", "durable ingest rate vs raw SQLite inserts", run)
