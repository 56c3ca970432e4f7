"""Shared pieces of the dispatcher tests: fast settings, waiting for the outbox to settle, one
delivery dispatched to a receiver from start to end, and for tests without a server a clock
and a sender's handler that move only when the test says so."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any

from dhan_postback.service.dispatcher import Dispatcher
from dhan_postback.service.sender import Answer, Request
from dhan_postback.service.store.base import (
    Attempt,
    Claim,
    DeliveryStatus,
    NewDelivery,
    Store,
)
from dhan_postback.service.store.memory import MemoryStore
from dhan_postback.settings import ServiceSettings

from .outbox import Outbox
from .receivers import RecordingReceiver
from .servers import UvicornThread
from .updates import order_updates

__all__ = [
    "FifoBreakingStore",
    "FrozenClock",
    "Gate",
    "deliver_one",
    "fast_settings",
    "settled",
]


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


async def deliver_one(
    store: Store, receiver: RecordingReceiver, settings: ServiceSettings | None = None
) -> tuple[NewDelivery, list[Attempt]]:
    """One delivery to ``receiver`` (served on a loopback port, path ``/hook``), dispatched
    until it is delivered or dead: the delivery and its attempts."""
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        [delivery] = await outbox.add(server.url + "/hook", order_updates(1, 1))
        async with Dispatcher(store, settings or fast_settings()):
            await settled(store, 1)
        attempts = await store.get_attempts(delivery.id)
    return delivery, attempts


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


class Gate:
    """A sender's handler that holds every POST until the test lets it answer."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Request, asyncio.Future[Answer]]] = []

    async def __call__(self, request: Request) -> Answer:
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.waiting.append((request, answer))
        return await answer

    def answer(self, status: int = 200) -> Request:
        """Let the oldest POST under way answer ``status``; return its request."""
        request, answer = self.waiting.pop(0)
        answer.set_result(Answer(status))
        return request


class FrozenClock:
    """Wall-clock time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = time.time()  # after the outbox is filled: its deliveries are due

    def __call__(self) -> float:
        return self.now
