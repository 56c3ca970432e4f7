"""The arq peer: an asyncio job per update that signs it and POSTs it, on Redis.

One aiohttp session for the worker (made in ``on_startup``), ``max_jobs`` =
``BENCH_PEERS_CONCURRENCY`` jobs at once (as many POSTs in flight as our dispatcher has), a
retry with backoff when the POST fails, no result kept; on uvloop, as our service runs. Run by
the benchmark: ``python -m bench.peer_arq``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import uvloop
from arq import Retry
from arq.connections import RedisSettings
from arq.worker import run_worker

from bench.peer_signing import CONCURRENCY, REDIS_URL, signed_headers

__all__ = ["WorkerSettings", "deliver"]


async def deliver(ctx: dict[str, Any], url: str, msg_id: str, body: str) -> None:
    """Sign the update and POST it; a failure is retried later with a growing delay."""
    session: aiohttp.ClientSession = ctx["session"]
    try:
        async with session.post(
            url, data=body.encode(), headers=signed_headers(msg_id, body)
        ) as response:
            await response.read()
            response.raise_for_status()
    except aiohttp.ClientError as error:
        raise Retry(defer=ctx["job_try"] * 5) from error


async def startup(ctx: dict[str, Any]) -> None:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY, limit_per_host=CONCURRENCY)
    ctx["session"] = aiohttp.ClientSession(
        connector=connector, auto_decompress=False, timeout=aiohttp.ClientTimeout(total=5)
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["session"].close()


class WorkerSettings:
    functions = [deliver]
    redis_settings = RedisSettings.from_dsn(REDIS_URL)
    max_jobs = CONCURRENCY
    max_tries = 10
    keep_result = 0
    on_startup = startup
    on_shutdown = shutdown


if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    run_worker(WorkerSettings)  # type: ignore[arg-type]
