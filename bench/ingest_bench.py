"""Ingest throughput of ``dhan-postback serve`` on SQLite: durable updates per second.

Starts the service as a subprocess on a fresh SQLite file (or uses ``--server``), creates an
access token, then for ``--duration`` seconds keeps ``--concurrency`` requests in flight,
each carrying ``--batch`` updates with distinct order ids. Every 202 means the updates were
committed (WAL, synchronous=FULL). Client and server share the machine's cores.

    .venv/bin/python bench/ingest_bench.py --batch 1 --concurrency 64 --duration 10
    .venv/bin/python bench/ingest_bench.py --batch 1000 --concurrency 4 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

EXAMPLE: dict[str, Any] = {
    "dhanClientId": "1000000003",
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ok(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def _start_server(workdir: Path, admin_key: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "DHAN_POSTBACK_ADMIN_KEY": admin_key}
    args = [sys.executable, "-m", "dhan_postback", "serve", "--port", str(port)]
    args += ["--db", f"sqlite:///{workdir / 'bench.db'}", "--allow-loopback"]
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    _wait_ok(url + "/healthz")
    return process, url


def _bodies(batch: int, count: int) -> list[bytes]:
    """``count`` request bodies of ``batch`` updates each, every order id distinct."""
    order_ids = itertools.count(1)
    bodies = []
    for _ in range(count):
        updates = [{**EXAMPLE, "orderId": str(next(order_ids))} for _ in range(batch)]
        bodies.append(json.dumps(updates[0] if batch == 1 else updates).encode())
    return bodies


async def _run(url: str, admin_key: str, batch: int, concurrency: int, duration: float) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        async with session.post(
            url + "/v2/access-tokens",
            headers={"admin-key": admin_key},
            json={"dhanClientId": EXAMPLE["dhanClientId"], "postbackUrl": "http://127.0.0.1:8999/"},
        ) as response:
            token = (await response.json())["accessToken"]
        headers = {"access-token": token, "Content-Type": "application/json"}
        bodies = _bodies(batch, max(64, 2 * concurrency) if batch <= 10 else 2 * concurrency)
        latencies: list[float] = []
        failures = 0
        acknowledged = 0

        async def worker(offset: int, deadline: float) -> None:
            nonlocal failures, acknowledged
            index = offset
            while time.perf_counter() < deadline:
                body = bodies[index % len(bodies)]
                index += concurrency
                started = time.perf_counter()
                async with session.post(url + "/v2/order-updates", data=body, headers=headers) as r:
                    await r.read()
                    if r.status == 202:
                        acknowledged += batch
                        latencies.append(time.perf_counter() - started)
                    else:
                        failures += 1
                        if failures <= 3:
                            print(f"  failed: {r.status} {(await r.read())[:200]!r}")

        warm = time.perf_counter() + min(2.0, duration / 5)
        await asyncio.gather(*(worker(i, warm) for i in range(concurrency)))
        latencies.clear()
        acknowledged = failures = 0
        started = time.perf_counter()
        deadline = started + duration
        await asyncio.gather(*(worker(i, deadline) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    print(
        f"batch={batch} concurrency={concurrency} duration={elapsed:.1f}s "
        f"requests={len(latencies)} failures={failures}\n"
        f"  updates/s (durable): {acknowledged / elapsed:,.0f}\n"
        f"  requests/s:          {len(latencies) / elapsed:,.0f}\n"
        f"  latency ms p50={pct(0.5):.1f} p99={pct(0.99):.1f} max={latencies[-1] * 1000:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1, help="updates per request")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to measure")
    parser.add_argument("--server", help="use a running service instead of starting one")
    parser.add_argument("--admin-key", default=os.environ.get("DHAN_POSTBACK_ADMIN_KEY"))
    args = parser.parse_args()
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.server:
        if not args.admin_key:
            raise SystemExit("--server needs --admin-key (or DHAN_POSTBACK_ADMIN_KEY)")
        asyncio.run(_run(args.server, args.admin_key, args.batch, args.concurrency, args.duration))
        return
    admin_key = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as workdir:
        process, url = _start_server(Path(workdir), admin_key)
        try:
            asyncio.run(_run(url, admin_key, args.batch, args.concurrency, args.duration))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
