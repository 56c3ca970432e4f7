"""Retention: finished deliveries, their attempts and expired idempotency keys are deleted.

Nothing else ever deletes a row, so without this the outbox grows by every update forever.
The :class:`Pruner` runs beside the dispatcher on every node (``serve`` and ``worker``): one
round right after start (a node that was down catches up), then one every
``prune_interval``. A round is a run of small batches (``prune_batch`` deliveries, each its
own short transaction) until a batch comes back short, so that the writer is never held long
and delivery latency does not move; between batches it yields to the event loop. Pending
deliveries are never touched (see :meth:`~.store.Store.prune`). Where nodes share a
PostgreSQL store, the store lets one prune at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import structlog

from ..settings import ServiceSettings
from .metrics import ServiceMetrics
from .store import PruneResult, Store

__all__ = ["Clock", "Pruner", "prune_hook", "pruning"]

log = structlog.get_logger(__name__)

Clock = Callable[[], float]

_PAUSE_BETWEEN_BATCHES = 0.01
"""Seconds between two batches of a round: room for the writer to serve ingest and finish."""


class Pruner:
    """Deletes what is past its retention, in batches; counts it in ``metrics``."""

    def __init__(
        self,
        store: Store,
        settings: ServiceSettings,
        *,
        metrics: ServiceMetrics | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.clock = clock

    async def prune_once(self) -> PruneResult:
        """One round: batches until one deletes less than a full batch; what they deleted."""
        total = PruneResult()
        settings = self.settings
        while True:
            now = self.clock()
            batch = await self.store.prune(
                delivered_before=now - settings.retain_delivered,
                dead_before=now - settings.retain_dead,
                keys_before=now - settings.idempotency_window,
                limit=settings.prune_batch,
            )
            self._count(batch)
            total += batch
            if batch.rows < settings.prune_batch:
                return total
            await asyncio.sleep(_PAUSE_BETWEEN_BATCHES)

    def _count(self, batch: PruneResult) -> None:
        if self.metrics is None:
            return
        for kind in ("delivered", "dead", "attempts", "idempotency_keys"):
            count = getattr(batch, kind)
            if count:
                self.metrics.pruned.labels(kind=kind).inc(count)

    async def run(self) -> None:
        """Prune now, then every ``prune_interval``, until cancelled; a failed round is
        logged and the next one tries again."""
        while True:
            try:
                result = await self.prune_once()
            except Exception as exc:
                log.warning("pruning failed", error_type=type(exc).__name__)
            else:
                if result.rows:
                    log.info("pruned", **dataclasses.asdict(result))
            await asyncio.sleep(self.settings.prune_interval)


@contextlib.asynccontextmanager
async def pruning(
    store: Store, settings: ServiceSettings, *, metrics: ServiceMetrics | None = None
) -> AsyncIterator[Pruner | None]:
    """Run a :class:`Pruner` in the background for the life of the block (none when
    ``prune_interval`` is 0)."""
    if settings.prune_interval <= 0:
        yield None
        return
    pruner = Pruner(store, settings, metrics=metrics)
    task = asyncio.create_task(pruner.run(), name="dhan-postback-pruner")
    try:
        yield pruner
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def prune_hook(
    settings: ServiceSettings, *, metrics: ServiceMetrics | None = None
) -> Callable[[Store], AbstractAsyncContextManager[object]]:
    """:func:`pruning` as a lifespan hook of the service app (``create_app``), which hands
    it the open store."""

    def hook(store: Store) -> AbstractAsyncContextManager[object]:
        return pruning(store, settings, metrics=metrics)

    return hook
