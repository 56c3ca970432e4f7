"""B4: requests/s of the receiver (verify + de-duplicate + durable store) next to a bare handler.

Both servers run the same way (uvicorn, uvloop, httptools, one process each) and get the same
signed bodies from the same aiohttp client (64 connections, keep-alive), back to back in each
round; the row is the median over rounds, the server CPU per request is in the notes.

The bare server is Starlette with one route that reads the body and answers 200 with a
msgspec-encoded body: the floor any real handler stands on (``python -m bench.receiver_bench
PORT``). The receiver is ``dhan-postback receive`` with a signing secret and a fresh SQLite
file (WAL, synchronous=FULL). Only loopback is used.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import aiohttp
import msgspec

from bench.harness import ROOT, Context, Row, Scenario, cpu_seconds, free_port, median, run_async
from dhan_postback import payload, signing

_OK = msgspec.json.encode({"status": "accepted"})


def bare_app() -> Any:
    """Starlette + msgspec, reading the body and answering 200, nothing else."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def postback(request: Request) -> Response:
        await request.body()
        return Response(_OK, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(_OK, media_type="application/json")

    return Starlette(routes=[Route("/", postback, methods=["POST"]), Route("/healthz", healthz)])


def bodies(count: int, secret: str, prefix: str) -> list[tuple[bytes, dict[str, str]]]:
    """Signed updates: orders of four updates each (TRANSIT, PENDING, part filled, TRADED)."""
    signer = signing.Signer(secret)
    base = payload.parse((ROOT / "tests/fixtures/docs_example.json").read_bytes()).to_update()
    steps = [("TRANSIT", 0), ("PENDING", 0), ("PENDING", 2), ("TRADED", 5)]
    out = []
    for index in range(count):
        order, step = divmod(index, len(steps))
        status, filled = steps[step]
        update = base.replace(
            order_id=f"{prefix}{order:010d}",
            order_status=status,
            filled_qty=filled,
            update_time=f"2024-01-02 10:{order // 60 % 60:02d}:{step:02d}",
        )
        body = payload.dumps(update)
        headers = {"content-type": "application/json"}
        headers.update(signer.headers(f"msg_{prefix}{index}", body))
        out.append((body, headers))
    return out


async def load(url: str, work: list[tuple[bytes, dict[str, str]]], connections: int) -> float:
    """POST every item with ``connections`` concurrent keep-alive connections; return req/s."""
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    next_index = 0
    failures = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_index, failures
        while next_index < len(work):
            body, headers = work[next_index]
            next_index += 1
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    failures += 1

    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{failures} requests to {url} did not get 200")
    return len(work) / elapsed


CONNECTIONS = 64


def run(ctx: Context) -> list[Row]:
    """Alternate the two servers each round; the medians of the rates, and of server CPU."""
    count = ctx.pick(6_000, 20_000)
    secret = signing.generate_secret()
    bare_port, receiver_port = free_port(), free_port()
    rates: dict[str, list[float]] = {"bare": [], "receiver": []}
    cpu: dict[str, list[float]] = {"bare": [], "receiver": []}
    receiver_args = ["-m", "dhan_postback", "receive", "--quiet", "--port", str(receiver_port)]
    receiver_args += ["--db", str(ctx.scratch("b4") / "receiver.db")]
    with (
        ctx.spawn(
            ["-m", "bench.receiver_bench", str(bare_port)],
            health_url=f"http://127.0.0.1:{bare_port}/healthz",
            log_name="b4-bare",
        ) as bare,
        ctx.spawn(
            receiver_args,
            health_url=f"http://127.0.0.1:{receiver_port}/healthz",
            env={"DHAN_POSTBACK_RECEIVER_SECRET": secret},
            log_name="b4-receiver",
        ) as receiver,
    ):
        servers = {"bare": (bare.pid, bare_port), "receiver": (receiver.pid, receiver_port)}
        for round_ in range(ctx.rounds):
            for name, (pid, port) in servers.items():
                url = f"http://127.0.0.1:{port}/"
                run_async(load(url, bodies(1_000, secret, f"W{round_}{name[0]}"), CONNECTIONS))
                work = bodies(count, secret, f"R{round_}{name[0]}")
                before = cpu_seconds(pid)
                rates[name].append(run_async(load(url, work, CONNECTIONS)))
                cpu[name].append((cpu_seconds(pid) - before) / count)
    ours, baseline = median(rates["receiver"]), median(rates["bare"])
    return [
        Row(
            "B4",
            "receiver: verify, dedupe, store",
            ours,
            baseline,
            "req/s",
            target=">= 0.8x",
            met=ours / baseline >= 0.8,
            note=f"{count:,} requests x {ctx.rounds} rounds, {CONNECTIONS} connections; server "
            f"CPU per request: ours {median(cpu['receiver']) * 1e6:.0f} us, "
            f"bare {median(cpu['bare']) * 1e6:.0f} us",
        )
    ]


SCENARIO = Scenario("B4", "receiver vs bare Starlette+msgspec", run)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        bare_app(),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
