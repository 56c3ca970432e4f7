"""The pruner's rounds, on the in-memory store: batches until one comes back short."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from dhan_postback.service.metrics import ServiceMetrics
from dhan_postback.service.registry import register_token
from dhan_postback.service.retention import Pruner
from dhan_postback.service.store import (
    Attempt,
    NewDelivery,
    Outcome,
    PruneResult,
    Target,
    TokenRecord,
)
from dhan_postback.service.store.memory import MemoryStore
from dhan_postback.settings import ServiceSettings
from tests.helpers.waiting import eventually

NOW = 1_700_000_000.0
DAY = 86400.0
TOKEN = TokenRecord("h" * 64, "1000000003", "https://a.example/", None, 0, 1e12)


class CountingStore(MemoryStore):
    """The memory store, noting the limit of each prune batch it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def prune(self, **window: Any) -> PruneResult:
        self.batches.append(window["limit"])
        return await super().prune(**window)


async def delivered_at(store: MemoryStore, times: list[float]) -> None:
    await register_token(store, TOKEN, "whsec_eA==")
    await store.enqueue(
        [
            NewDelivery(f"msg_{i}", TOKEN.dhan_client_id, TOKEN.token_hash, Target.TOKEN, None,
                        "https://a.example/", f"o{i}", b"{}", at)
            for i, at in enumerate(times)
        ]
    )  # fmt: skip
    for claim in await store.claim(limit=100, now=max(times), lease=30):
        at = times[int(claim.id.removeprefix("msg_"))]
        await store.finish([Outcome(Attempt(claim.id, 1, at, 0.0, 200), "delivered")])


def settings(**overrides: Any) -> ServiceSettings:
    return ServiceSettings(**{"retain_delivered": "7d", "prune_batch": 2, **overrides})


async def test_a_round_prunes_in_batches_until_one_is_short() -> None:
    store = CountingStore()
    await delivered_at(store, [NOW - 8 * DAY] * 5)
    metrics = ServiceMetrics()
    pruner = Pruner(store, settings(), metrics=metrics, clock=lambda: NOW)
    result = await pruner.prune_once()
    assert (result.delivered, result.attempts) == (5, 5)
    assert store.batches == [2, 2, 2]
    sample = metrics.registry.get_sample_value("dhan_postback_pruned_total", {"kind": "delivered"})
    assert sample == 5


async def test_a_round_keeps_what_is_younger_than_its_retention() -> None:
    store = CountingStore()
    await delivered_at(store, [NOW - 8 * DAY, NOW - 6 * DAY])
    result = await Pruner(store, settings(), clock=lambda: NOW).prune_once()
    assert result.delivered == 1
    assert await store.get_delivery("msg_1") is not None


async def test_a_round_that_prunes_logs_every_count_of_what_it_deleted() -> None:
    store = CountingStore()
    await delivered_at(store, [NOW - 8 * DAY] * 3)
    pruner = Pruner(store, settings(), clock=lambda: NOW)
    with structlog.testing.capture_logs() as events:
        task = asyncio.create_task(pruner.run())
        await eventually(lambda: any(e["event"] == "pruned" for e in events))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    [pruned] = [e for e in events if e["event"] == "pruned"]
    assert {k: pruned[k] for k in ("delivered", "dead", "attempts", "idempotency_keys")} == {
        "delivered": 3,
        "dead": 0,
        "attempts": 3,
        "idempotency_keys": 0,
    }
