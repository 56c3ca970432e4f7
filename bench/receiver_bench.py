"""Requests/s of the receiver (verify + de-duplicate + durable store) next to a bare handler.

Both servers run the same way (uvicorn, uvloop, httptools, one process each) and get the same
signed bodies from the same aiohttp client (64 connections, keep-alive), in the same run:

    .venv/bin/python bench/receiver_bench.py            # 2 rounds of 30,000 requests each
    .venv/bin/python bench/receiver_bench.py --quick    # 8,000 requests a round

Machines shared with other work are noisy: compare the best round of each, and the median of
the ratios measured within one round (both servers back to back).

The bare server is Starlette with one route that reads the body and answers 200 with a
msgspec-encoded body: the floor any real handler stands on. The receiver is
``dhan-postback receive`` with a signing secret and a fresh SQLite file (WAL, synchronous=FULL).
Only loopback is used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import uvloop

from dhan_postback import payload, signing

ROOT = Path(__file__).resolve().parent.parent
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


def start(args: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"server on port {port} did not start") from None
            time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc on Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--quick", action="store_true", help="8,000 requests per server")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="alternate the servers this often")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_bare:
        import uvicorn

        uvicorn.run(
            bare_app(),
            host="127.0.0.1",
            port=options.serve_bare,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level="warning",
        )
        return
    count = 8_000 if options.quick else options.requests
    secret = signing.generate_secret()
    warmup = 1_000
    results: dict[str, list[float]] = {"bare": [], "receiver": []}
    with tempfile.TemporaryDirectory() as tmp:
        bare_port, receiver_port = free_port(), free_port()
        bare = start([sys.executable, __file__, "--serve-bare", str(bare_port)], bare_port)
        receiver = start(
            [
                sys.executable,
                "-m",
                "dhan_postback",
                "receive",
                "--quiet",
                "--port",
                str(receiver_port),
                "--db",
                str(Path(tmp) / "bench.db"),
            ],
            receiver_port,
            env={"DHAN_POSTBACK_RECEIVER_SECRET": secret},
        )
        try:
            for round_ in range(options.rounds):
                for name, port in (("bare", bare_port), ("receiver", receiver_port)):
                    url = f"http://127.0.0.1:{port}/"
                    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                        runner.run(
                            load(
                                url,
                                bodies(warmup, secret, f"W{round_}{name[0]}"),
                                options.connections,
                            )
                        )
                        work = bodies(count, secret, f"R{round_}{name[0]}")
                        pid = (bare if name == "bare" else receiver).pid
                        cpu_before = cpu_seconds(pid)
                        rate = runner.run(load(url, work, options.connections))
                        cpu = (cpu_seconds(pid) - cpu_before) / count * 1e6
                    results[name].append(rate)
                    print(
                        f"round {round_ + 1}: {name:8s} {rate:9,.0f} req/s"
                        f"  (server CPU {cpu:5.1f} us/request)",
                        flush=True,
                    )
        finally:
            bare.terminate()
            receiver.terminate()
            bare.wait(10)
            receiver.wait(10)
    best = {name: max(rates) for name, rates in results.items()}
    ratios = sorted(r / b for r, b in zip(results["receiver"], results["bare"], strict=True))
    print(
        f"best of {options.rounds}: bare {best['bare']:,.0f} req/s, "
        f"receiver {best['receiver']:,.0f} req/s, ratio {best['receiver'] / best['bare']:.2f}x; "
        f"median ratio within a round {statistics.median(ratios):.2f}x "
        f"({count} requests a round, {options.connections} connections)"
    )


if __name__ == "__main__":
    main()
