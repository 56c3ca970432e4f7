"""Shared pieces of the dispatcher tests: fast settings and waiting for the outbox to settle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from typing import Any

from dhan_postback.service.store.base import Claim, DeliveryStatus, Store
from dhan_postback.service.store.memory import MemoryStore
from dhan_postback.settings import ServiceSettings

__all__ = ["FifoBreakingStore", "eventually", "fast_settings", "settled"]


def fast_settings(**overrides: Any) -> ServiceSettings:
    """Settings for tests: short schedule and timeout, loopback allowed, breaker out of the way."""
    values: dict[str, Any] = {
        "retry_schedule": "0s,50ms,100ms",
        "timeout": 0.5,
        "lease": 5.0,
        "allow_loopback": True,
        "breaker_min_attempts": 10_000,  # more than a window holds: it never opens
        "breaker_cooldown": 0.2,
        "shutdown_grace": 2.0,
        "max_in_flight_per_url": 16,
        "max_in_flight": 128,
        "claim_batch": 64,
    }
    values.update(overrides)
    return ServiceSettings(**values)


async def settled(store: Store, count: int, timeout: float = 20.0) -> dict[DeliveryStatus, int]:
    """Wait until ``count`` deliveries are delivered or dead; return the counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await store.counts()
        if counts[DeliveryStatus.DELIVERED] + counts[DeliveryStatus.DEAD] >= count:
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"outbox did not settle within {timeout}s: {counts}")
        await asyncio.sleep(0.02)


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


class FifoBreakingStore(MemoryStore):
    """A broken store that hands out every due delivery, heads or not."""

    async def claim(
        self, *, limit: int, now: float, lease: float, skip_urls: Collection[str] = ()
    ) -> list[Claim]:
        claims = []
        for row in sorted(self._rows.values(), key=lambda row: row.seq):
            if (
                row.status is DeliveryStatus.PENDING
                and row.lease_until <= now
                and row.next_attempt_at <= now
                and row.new.url not in skip_urls
            ):
                claims.append(self._lease(row, now + lease))
        return claims[:limit]
