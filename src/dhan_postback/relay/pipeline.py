"""The relay: broker websocket in, postback service out, the relay's log in between.

Three tasks share the log::

    frames --parse, map--> RelayLog.record (dedupe, durable) --wake--> forwarder --> Sink
                 \\--unreadable / unmappable--> dead letters        <--ack after commit--/
    order book rows --map--/   (reconciler: after each login, every interval)

Frames and book rows go through the same ``record``: an update is taken only if it is newer
than its order's last state (:mod:`~.progress`), so a change seen by both is relayed once and
nothing moves an order backwards.

The reader writes each frame's updates to the log before it reads the next frame, so an
update that arrived is never lost; the forwarder sends what the log holds, oldest first, and
marks it acknowledged only after the sink committed it. Updates of one order therefore reach
the service in the order the broker sent them, and a crash at any point re-sends at most the
one batch that was in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from ..payload import OrderUpdate
from .log import LoggedUpdate, Recorded, RelayLog
from .mapping import UnreadableFrame, map_book_row, map_order_alert, parse_frame
from .orderbook import TokenRefused
from .reconcile import Reconciler
from .sink import Sink, UpdateRefused

__all__ = ["FrameSource", "Relay", "RelayStatus"]

log = structlog.get_logger(__name__)

_DISTINCT_WARNINGS_LOGGED = 1_000


class FrameSource(Protocol):
    """Raw frames from the broker, and the state of the link (see ``OrderUpdateStream``)."""

    connected: bool
    connections: int
    disconnects: int
    last_error: str | None

    def frames(self) -> AsyncGenerator[str | bytes, None]: ...


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """A snapshot for the status line and for tests.

    ``relayed`` counts updates the sink committed in this run; ``duplicates`` frames whose
    change was already taken (from a frame or the book); ``stale`` frames older than their
    order's last state; ``dead_letters`` frames, rows or updates kept aside (unreadable,
    unmappable, or refused by the service); ``pending`` updates in the log not yet committed;
    ``reconciles`` order-book reads, ``reconciled`` updates taken from them.
    """

    connected: bool
    connections: int
    disconnects: int
    link_error: str | None
    sink_error: str | None
    frames: int
    relayed: int
    duplicates: int
    other_frames: int
    repaired_frames: int
    dead_letters: int
    refused: int
    warnings: int
    pending: int
    last_update_time: str | None
    last_relayed_at: float | None
    reconciles: int = 0
    reconciled: int = 0
    stale: int = 0
    reconcile_error: str | None = None


class Relay:
    """Run the broker-to-service relay until :meth:`stop` (or until the sink is unusable)."""

    def __init__(
        self,
        source: FrameSource,
        sink: Sink,
        relay_log: RelayLog,
        *,
        batch_size: int = 500,
        shutdown_grace: float = 10.0,
        reconciler: Reconciler | None = None,
    ) -> None:
        self.source = source
        self.reconciler = reconciler
        self.sink = sink
        self.log = relay_log
        self.batch_size = batch_size
        self.shutdown_grace = shutdown_grace
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._frames = self._relayed = self._duplicates = self._other = 0
        self._repaired = self._dead_letters = self._refused = self._warnings = 0
        self._pending = self._reconciled = self._stale = 0
        self._book_dead_letters: set[str] = set()
        self._last_update_time: str | None = None
        self._last_relayed_at: float | None = None
        self._warned: set[str] = set()

    def status(self) -> RelayStatus:
        return RelayStatus(
            connected=self.source.connected,
            connections=self.source.connections,
            disconnects=self.source.disconnects,
            link_error=self.source.last_error,
            sink_error=self.sink.last_error,
            frames=self._frames,
            relayed=self._relayed,
            duplicates=self._duplicates,
            other_frames=self._other,
            repaired_frames=self._repaired,
            dead_letters=self._dead_letters,
            refused=self._refused,
            warnings=self._warnings,
            pending=self._pending,
            last_update_time=self._last_update_time,
            last_relayed_at=self._last_relayed_at,
            reconciles=self.reconciler.reconciles if self.reconciler else 0,
            reconciled=self._reconciled,
            stale=self._stale,
            reconcile_error=self.reconciler.last_error if self.reconciler else None,
        )

    def stop(self) -> None:
        """Stop reading frames, hand on what is pending (within the grace), then return."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Relay until stopped. Raises :class:`SinkUnusable` if the service refuses the relay,
        :class:`TokenRefused` (after handing on what it has) if the broker refuses the login.

        The sink is started here and closed when this returns; the log is the caller's.
        """
        await self.sink.start()
        try:
            await self._run()
        finally:
            await self.sink.close()

    async def _run(self) -> None:
        self._pending = (await self.log.counts()).pending
        reader = asyncio.create_task(self._read(), name="relay-reader")
        forwarder = asyncio.create_task(self._forward(), name="relay-forwarder")
        stopping = asyncio.create_task(self._stopping.wait(), name="relay-stop")
        tasks = {reader, forwarder, stopping}
        if self.reconciler is not None:
            source = self.source
            tasks.add(
                asyncio.create_task(
                    self.reconciler.run(lambda: source.connected, self._take_rows),
                    name="relay-reconciler",
                )
            )
        refused: TokenRefused | None = None
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stopping}:
                error = None if task.cancelled() else task.exception()
                if isinstance(error, TokenRefused):
                    refused = error  # the service still takes what was received: drain first
                elif error is not None:
                    raise error  # a failure of any task ends the relay with its error
            self.stop()  # the source ended, stop() was called or the broker refused us
            for task in tasks - {forwarder, stopping}:
                await _cancel(task)
            try:
                await asyncio.wait_for(asyncio.shield(forwarder), self.shutdown_grace)
            except TimeoutError:
                log.warning("relay.stop.pending_left", pending=self._pending)
            if refused is not None:
                raise refused
        finally:
            for task in tasks:
                await _cancel(task)

    # Reading -----------------------------------------------------------------------------

    async def _read(self) -> None:
        async with contextlib.aclosing(self.source.frames()) as frames:
            async for raw in frames:
                await self._take(raw)

    async def _take(self, raw: str | bytes) -> None:
        self._frames += 1
        try:
            frame = parse_frame(raw)
        except UnreadableFrame as exc:
            await self._dead_letter(raw, exc.message)
            return
        if frame.repaired:
            self._repaired += 1
        if not frame.is_order_alert:
            self._other += 1
            log.info("relay.frame.not_an_order_alert", type=frame.kind or None)
            return
        updates = []
        for alert in frame.alerts:
            result = map_order_alert(alert)
            if result.warnings:
                self._warn(result.warnings, result.update.order_id if result.update else None)
            if result.update is None:
                await self._dead_letter(raw, f"cannot map the order_alert: {result.error}")
            else:
                updates.append(result.update)
        if updates:
            await self._record(updates)

    async def _take_rows(self, rows: list[dict[str, Any]]) -> None:
        """The order book's rows: each newer than its order's last state is relayed."""
        updates = []
        for row in rows:
            result = map_book_row(row)
            if result.warnings:
                self._warn(result.warnings, result.update.order_id if result.update else None)
            if result.update is not None:
                updates.append(result.update)
                continue
            text = json.dumps(row, sort_keys=True, default=str)
            if text not in self._book_dead_letters:  # the book shows it again every time
                self._book_dead_letters.add(text)
                await self._dead_letter(text, f"cannot map the order-book row: {result.error}")
        outcomes = await self._record(updates, from_book=True) if updates else []
        new = outcomes.count(Recorded.NEW)
        self._reconciled += new
        log.info(
            "relay.reconciled",
            rows=len(rows),
            relayed=new,
            duplicates=outcomes.count(Recorded.DUPLICATE),
            stale=outcomes.count(Recorded.STALE),
        )

    async def _record(
        self, updates: list[OrderUpdate], *, from_book: bool = False
    ) -> list[Recorded]:
        """Log the updates newer than their order's last state; count what was skipped (the
        book's unchanged rows are not counted: most of the book is unchanged every time)."""
        outcomes = await self.log.record(updates)
        new = outcomes.count(Recorded.NEW)
        if not from_book:
            self._duplicates += outcomes.count(Recorded.DUPLICATE)
            self._stale += outcomes.count(Recorded.STALE)
        if new:
            self._pending += new
            self._wake.set()
        return outcomes

    def _warn(self, warnings: Sequence[str], order_id: str | None) -> None:
        """Count every warning; log each distinct one once (a broker habit repeats a lot)."""
        self._warnings += len(warnings)
        fresh = [text for text in warnings if text not in self._warned]
        if fresh and len(self._warned) < _DISTINCT_WARNINGS_LOGGED:
            self._warned.update(fresh)
            log.warning("relay.mapping.warnings", order_id=order_id, warnings=fresh)

    async def _dead_letter(self, raw: str | bytes, reason: str) -> None:
        self._dead_letters += 1
        log.error("relay.frame.dead_letter", reason=reason)
        await self.log.dead_letter(raw, reason)

    # Forwarding --------------------------------------------------------------------------

    async def _forward(self) -> None:
        while True:
            self._wake.clear()
            batch = await self.log.pending(self.batch_size)
            if batch:
                await self._deliver(batch)
                continue
            if self._stopping.is_set():
                return
            await self._wake.wait()

    async def _deliver(self, batch: Sequence[LoggedUpdate]) -> None:
        """Submit a batch; if the service refuses it, halve it until the culprit is alone."""
        try:
            await self.sink.submit([entry.payload for entry in batch])
        except UpdateRefused as exc:
            if len(batch) > 1:
                middle = len(batch) // 2
                await self._deliver(batch[:middle])
                await self._deliver(batch[middle:])
                return
            (entry,) = batch
            log.error(
                "relay.sink.refused_update",
                order_id=entry.order_id,
                update_time=entry.update_time,
                reason=exc.message,
            )
            await self.log.refuse(entry, exc.message)
            self._refused += 1
            self._dead_letters += 1
            self._pending -= 1
            return
        await self.log.ack([entry.seq for entry in batch])
        self._relayed += len(batch)
        self._pending -= len(batch)
        self._last_update_time = batch[-1].update_time
        self._last_relayed_at = time.time()


async def _cancel(task: asyncio.Task[object]) -> None:
    """Cancel ``task`` and wait for it; its outcome was already taken when it is done."""
    if task.done():
        if not task.cancelled():
            task.exception()  # mark as retrieved
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
