"""Delivered per second: our dispatcher (store, leases, signing, batching) vs a bare POST loop.

Both send the same payload to the same local receiver (raw ASGI on uvicorn + uvloop +
httptools, answering 200, in its own process), with the same concurrency, in the same run:

* **bare**: aiohttp + uvloop, one session, ``--concurrency`` workers POSTing pre-encoded
  bytes with fixed headers: no store, no signing, no retries. The ceiling for our client.
* **dispatcher**: ``--updates`` deliveries (one per order, so order never holds anything
  back) committed to the store first, then a :class:`Dispatcher` with
  ``max_in_flight_per_url = max_in_flight = --concurrency``; the clock stops when the store
  says every delivery is delivered.

Run::

    .venv/bin/python bench/dispatch_bench.py --updates 20000 --rounds 3     # SQLite store
    .venv/bin/python bench/dispatch_bench.py --db null                      # no store cost

The CPU time per delivery (this process, every thread) is printed too: it is steadier than
the rates on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from dhan_postback import payload
from dhan_postback.service.dispatcher import Dispatcher
from dhan_postback.service.metrics import ServiceMetrics
from dhan_postback.service.store import create_store
from dhan_postback.service.store.base import (
    Claim,
    DeliveryStatus,
    NewDelivery,
    Store,
    Target,
    TokenRecord,
)
from dhan_postback.settings import ServiceSettings
from dhan_postback.signing import generate_secret

BODY = (Path(__file__).parent.parent / "tests" / "fixtures" / "docs_example.json").read_bytes()


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The fastest honest receiver: read the body, answer 200 ``ok``."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(
        "bench.dispatch_bench:receiver_app",
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_receiver() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    root = Path(__file__).parent.parent
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(
        [sys.executable, "-c", f"from bench.dispatch_bench import serve; serve({port})"],
        cwd=root,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/hook"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=b"{}"), timeout=1).read()
            return process, url
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)


def valid_body() -> bytes:
    """A valid compact payload (the docs' example, repaired and re-encoded)."""
    return payload.dumps(payload.parse(BODY).to_update())


async def bare(url: str, count: int, concurrency: int, body: bytes) -> tuple[float, float]:
    """Wall and CPU seconds for ``count`` POSTs by ``concurrency`` workers on one session."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    headers = {"Content-Type": "application/json", "User-Agent": "bench"}
    remaining = count

    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, timeout=aiohttp.ClientTimeout(total=5)
    ) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    assert response.status == 200

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, time.process_time() - cpu


class NullStore:
    """A store that costs nothing: to see the dispatcher's own ceiling (``--db null``).

    Only what this benchmark needs: every order has one update, so every row is a head;
    nothing is durable; retries are not kept.
    """

    def __init__(self) -> None:
        self._due: deque[Claim] = deque()
        self._secret = ""
        self._delivered = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def add_token(self, token: TokenRecord) -> None:
        self._secret = token.signing_secret

    async def enqueue(self, deliveries: list[NewDelivery]) -> None:
        for number, new in enumerate(deliveries):
            self._due.append(
                Claim(new.id, number, new.url, new.order_id, new.payload, self._secret, 0, 0, 0.0)
            )

    async def claim(
        self, *, limit: int, now: float, lease: float, skip_urls: Any = ()
    ) -> list[Claim]:
        taken = []
        while self._due and len(taken) < limit:
            taken.append(dataclasses.replace(self._due.popleft(), lease_until=now + lease))
        return taken

    async def finish(self, outcomes: list[Any]) -> None:
        self._delivered += sum(o.result == "delivered" for o in outcomes)

    async def release(self, ids: list[str]) -> None:
        raise AssertionError("the benchmark never gives claims back")

    async def next_due(self) -> float | None:
        return 0.0 if self._due else None

    async def counts(self) -> dict[DeliveryStatus, int]:
        return {DeliveryStatus.DELIVERED: self._delivered}


async def fill(store: Store, url: str, count: int, body: bytes) -> None:
    now = time.time()
    token = TokenRecord(
        token_hash=f"bench-{uuid.uuid4().hex}",
        dhan_client_id="1000000003",
        postback_url=url,
        partner_id=None,
        signing_secret=generate_secret(),
        created_at=now,
        expires_at=now + 86400,
    )
    await store.add_token(token)
    batch: list[NewDelivery] = []
    for number in range(count):
        batch.append(
            NewDelivery(
                id=f"msg_{uuid.uuid4().hex}",
                dhan_client_id=token.dhan_client_id,
                token_hash=token.token_hash,
                target=Target.TOKEN,
                partner_id=None,
                url=url,
                order_id=f"order-{number}",
                payload=body,
                created_at=now,
            )
        )
        if len(batch) == 1000:
            await store.enqueue(batch)
            batch = []
    if batch:
        await store.enqueue(batch)


class Finished:
    """Wraps a store to notice, at no cost, when ``count`` deliveries are committed delivered."""

    def __init__(self, inner: Any, count: int) -> None:
        self._inner = inner
        self._left = count
        self.done = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def finish(self, outcomes: list[Any]) -> None:
        await self._inner.finish(outcomes)
        self._left -= sum(outcome.result == "delivered" for outcome in outcomes)
        if self._left <= 0:
            self.done.set()


async def dispatched(
    db: str, url: str, count: int, concurrency: int, body: bytes
) -> tuple[float, float]:
    """Wall and CPU seconds from the dispatcher's start until ``count`` are delivered."""
    inner: Any = NullStore() if db == "null" else create_store(db)
    await inner.open()
    try:
        await fill(inner, url, count, body)
        settings = ServiceSettings(
            allow_loopback=True,
            max_in_flight=concurrency,
            max_in_flight_per_url=concurrency,
            retry_schedule="0s,1s",
        )
        store = Finished(inner, count)
        started, cpu = time.perf_counter(), time.process_time()
        async with Dispatcher(store, settings, metrics=ServiceMetrics()):
            await store.done.wait()
            elapsed = time.perf_counter() - started, time.process_time() - cpu
        assert (await inner.counts())[DeliveryStatus.DELIVERED] == count
        return elapsed
    finally:
        await inner.close()


async def main(args: argparse.Namespace) -> None:
    process, url = start_receiver()
    body = valid_body()
    try:
        await bare(url, 2000, args.concurrency, body)  # warm up the receiver
        n = args.updates
        ratios = []
        print(f"{n} POSTs per run, concurrency {args.concurrency}, store {args.db}")
        for round_number in range(1, args.rounds + 1):
            bare_s, bare_cpu = await bare(url, n, args.concurrency, body)
            db = args.db
            if db == "sqlite":
                db = f"sqlite:///{tempfile.mkdtemp()}/bench-{round_number}.db"
            ours_s, ours_cpu = await dispatched(db, url, n, args.concurrency, body)
            ratios.append(bare_s / ours_s)
            print(
                f"round {round_number}: bare aiohttp {n / bare_s:,.0f}/s "
                f"({bare_cpu / n * 1e6:.0f} us CPU each), "
                f"dispatcher {n / ours_s:,.0f}/s ({ours_cpu / n * 1e6:.0f} us CPU each), "
                f"ratio {ratios[-1]:.2f}",
                flush=True,
            )
        print(f"median ratio {statistics.median(ratios):.2f}")
    finally:
        process.terminate()
        process.wait(10)


def _has_sqlite() -> bool:
    return importlib.util.find_spec("dhan_postback.service.store.sqlite") is not None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--updates", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--db",
        default="sqlite" if _has_sqlite() else "memory://",
        help="store URL; 'sqlite' (the default when that backend exists): a fresh temporary "
        "file per round; 'null': a store that costs nothing (the dispatcher's own ceiling)",
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
