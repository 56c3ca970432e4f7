"""CPU per delivery of the outbox's hot path alone: claim then finish, no HTTP.

Fills a fresh store with ``--updates`` deliveries (``--per-order`` per order), then claims
``--batch`` at a time and finishes each batch as delivered, as the dispatcher does, until all
are delivered. Prints wall rate and CPU (every thread of this process) per delivery for claim
and finish separately. Run::

    .venv/bin/python bench/store_ops_bench.py --db sqlite --updates 20000 --rounds 3
    .venv/bin/python bench/store_ops_bench.py --db memory:// --updates 5000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid

import uvloop

from dhan_postback.service.registry import register_token
from dhan_postback.service.store import create_store
from dhan_postback.service.store.base import Attempt, NewDelivery, Outcome, Target, TokenRecord
from dhan_postback.signing import generate_secret

BODY = b'{"dhanClientId":"1000000003","orderId":"1","orderStatus":"TRADED"}' * 10


async def one_round(db: str, updates: int, per_order: int, batch: int) -> tuple[float, ...]:
    store = create_store(db)
    await store.open()
    try:
        now = time.time()
        token = TokenRecord(
            f"bench-{uuid.uuid4().hex}",
            "1000000003",
            "http://127.0.0.1:9/hook",
            None,
            now,
            now + 86400,
        )
        await register_token(store, token, generate_secret())
        rows = [
            NewDelivery(
                f"msg_{uuid.uuid4().hex}",
                token.dhan_client_id,
                token.token_hash,
                Target.TOKEN,
                None,
                "http://127.0.0.1:9/hook",
                f"order-{n // per_order}",
                BODY,
                now,
            )
            for n in range(updates)
        ]
        for start in range(0, updates, 1000):
            await store.enqueue(rows[start : start + 1000])
        claim_cpu = finish_cpu = 0.0
        done = 0
        wall = time.perf_counter()
        while done < updates:
            cpu = time.process_time()
            claims = await store.claim(limit=batch, now=time.time(), lease=30.0)
            claim_cpu += time.process_time() - cpu
            assert claims, "nothing claimable"
            cpu = time.process_time()
            outcomes = [
                Outcome(Attempt(c.id, c.attempts + 1, time.time(), 1.0, 200), "delivered")
                for c in claims
            ]
            await store.finish(outcomes)
            finish_cpu += time.process_time() - cpu
            done += len(claims)
        wall = time.perf_counter() - wall
        return updates / wall, claim_cpu / updates * 1e6, finish_cpu / updates * 1e6
    finally:
        await store.close()


async def main(args: argparse.Namespace) -> None:
    results = []
    for number in range(1, args.rounds + 1):
        db = args.db
        if db == "sqlite":
            db = f"sqlite:///{tempfile.mkdtemp()}/ops-{number}.db"
        rate, claim_us, finish_us = await one_round(db, args.updates, args.per_order, args.batch)
        results.append((rate, claim_us, finish_us))
        print(
            f"round {number}: {rate:,.0f} deliveries/s, claim {claim_us:.1f} us CPU, "
            f"finish {finish_us:.1f} us CPU per delivery",
            flush=True,
        )
    rate, claim_us, finish_us = (statistics.median(column) for column in zip(*results, strict=True))
    print(f"median: {rate:,.0f}/s, claim {claim_us:.1f} us, finish {finish_us:.1f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--updates", type=int, default=20000)
    parser.add_argument("--per-order", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
