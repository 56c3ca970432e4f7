"""When the relay reads the broker's order book: after every login, then on a timer.

The websocket sends nothing for the seconds it is down and never replays them, so every
fresh login may have missed changes; and a frame can be lost without any disconnect being
noticed. The :class:`Reconciler` therefore reads the order book right after every login and
then every ``interval`` seconds while the websocket is connected (a disconnected relay logs
in again soon, and that login reads the book). What becomes of the rows (mapping, the
newer-than check, the log) is the relay's business (:mod:`~.pipeline`).

Cost: one ``GET /v2/orders`` per login plus one per interval; at the default 60 s that is
at most 1,440 a day, about 375 over a 6¼-hour trading session, far inside the broker's
limits for non-trading requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from .orderbook import OrderBookUnavailable

__all__ = ["BookSource", "Reconciler", "Rows"]

log = structlog.get_logger(__name__)

Rows = list[dict[str, Any]]


class BookSource(Protocol):
    """The order book (see :class:`~.orderbook.OrderBook`); ``last_error`` is the trouble it
    is waiting out right now (None when healthy)."""

    last_error: str | None

    async def orders(self) -> Rows: ...

    async def close(self) -> None: ...


class Reconciler:
    """Reads the order book on each login and every ``interval`` seconds while connected."""

    def __init__(self, book: BookSource, *, interval: float) -> None:
        if interval <= 0:
            raise ValueError("the reconcile interval must be positive (no reconciler: off)")
        self.book = book
        self.interval = interval
        self.reconciles = 0
        self._failed: str | None = None
        self._due = asyncio.Event()

    @property
    def last_error(self) -> str | None:
        """Why the last read failed, or what the read in progress is waiting out."""
        return self.book.last_error or self._failed

    def logged_in(self) -> None:
        """The websocket has just logged in: read the book now (give to ``on_login``)."""
        self._due.set()

    async def run(
        self, connected: Callable[[], bool], take: Callable[[Rows], Awaitable[None]]
    ) -> None:
        """Forever: wait for a login or the interval, read the book, hand the rows to
        ``take``. Raises :class:`~.orderbook.TokenRefused`; other refusals are logged and
        tried again next time."""
        try:
            while True:
                try:
                    async with asyncio.timeout(self.interval):
                        await self._due.wait()
                except TimeoutError:
                    if not connected():
                        continue
                self._due.clear()
                try:
                    rows = await self.book.orders()
                except OrderBookUnavailable as exc:
                    self._failed = exc.message
                    log.error("relay.reconcile.failed", reason=exc.message)
                    continue
                self._failed = None
                self.reconciles += 1
                await take(rows)
        finally:
            await self.book.close()
