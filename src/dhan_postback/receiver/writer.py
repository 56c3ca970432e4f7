"""One SQLite writer thread with group commit: durable (``synchronous=FULL``) yet fast.

A fully synchronous commit costs an fsync, so committing once per request caps a receiver at a
few thousand requests a second. Instead every request hands its write to this thread and waits;
the thread takes *everything* queued, runs it in one transaction, commits once, and then wakes
all the waiters together (one wake-up per event loop, not one per request). While it is inside
an fsync, the next batch gathers by itself, so batches grow exactly when load does.

Two kinds of work go in: a :data:`Job` (one callable, run as is) and a :class:`BatchOp` item,
where consecutive items of one operation are handed over together, so that the operation can
write them all with a few multi-row statements instead of a few statements each. Fewer calls
into SQLite also means fewer hand-overs of the GIL between this thread and the event loop.

Anything that raises is isolated: the batch is rolled back and its items are re-run one
transaction each, so one bad item fails alone. An item that fails alone on its own values (an
integer SQLite cannot hold, text it cannot encode) fails with
:class:`~dhan_postback.errors.UnstorablePayload`: retrying it would fail the same way forever.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Final, Generic, NamedTuple, TypeVar

import structlog

from ..errors import StoreUnavailable, UnstorablePayload

__all__ = ["BatchOp", "GroupCommitWriter", "Job"]

log = structlog.get_logger(__name__)

T = TypeVar("T")
P = TypeVar("P")
Job = Callable[[sqlite3.Connection], Any]
"""A unit of work run inside the writer's transaction; its return value is the job's result."""


class BatchOp(Generic[P, T]):
    """An operation the writer applies to many queued items in one call.

    Subclasses implement :meth:`run`, which gets the items in queue order and returns one
    result per item, in the same order.
    """

    def run(self, conn: sqlite3.Connection, items: list[P]) -> list[T]:
        raise NotImplementedError


class _Queued(NamedTuple):
    work: Any
    """A :data:`Job`, or the item of ``op``."""
    op: BatchOp[Any, Any] | None
    future: asyncio.Future[Any] | concurrent.futures.Future[Any]
    loop: asyncio.AbstractEventLoop | None


_STOP: Final = object()


class GroupCommitWriter:
    """Runs jobs on one connection in one thread; every job's result arrives after its commit."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], *, max_batch: int = 2048) -> None:
        self._connect = connect
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Queued | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="receiver-writer", daemon=True)
        self._closed = False
        self._started = False
        self.commits = 0
        """Transactions committed so far (``items / commits`` is the mean batch size)."""
        self.items = 0

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    def submit(self, job: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``job``; the returned future (of the running loop) resolves after the commit."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(_Queued(job, None, future, loop))
        return future

    def submit_item(self, op: BatchOp[P, T], item: P) -> asyncio.Future[T]:
        """Queue ``item`` for ``op``; resolves with its result after the commit."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(_Queued(item, op, future, loop))
        return future

    def submit_item_sync(self, op: BatchOp[P, T], item: P) -> concurrent.futures.Future[T]:
        """Queue ``item`` for ``op`` from a thread without an event loop."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._put(_Queued(item, op, future, None))
        return future

    def submit_sync(self, job: Callable[[sqlite3.Connection], T]) -> concurrent.futures.Future[T]:
        """Queue ``job`` from a thread without an event loop."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._put(_Queued(job, None, future, None))
        return future

    def run(self, job: Callable[[sqlite3.Connection], T], timeout: float | None = 30.0) -> T:
        """Run ``job`` and wait for its result (blocking the calling thread)."""
        return self.submit_sync(job).result(timeout)

    def _put(self, item: _Queued) -> None:
        if self._closed:  # before start() jobs wait in the queue; after close() nothing runs
            raise StoreUnavailable("the receiver's store is closed")
        self._queue.put(item)

    def close(self, timeout: float = 30.0) -> None:
        """Finish every queued job, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._queue.put(_STOP)
            self._thread.join(timeout)

    # ---------------------------------------------------------------- the writer thread

    def _run(self) -> None:
        conn = self._connect()
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch: list[_Queued] = [first]  # type: ignore[list-item]
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)  # type: ignore[arg-type]
                self._commit(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Queued]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = _apply(conn, batch)
            conn.execute("COMMIT")
            self.commits += 1
            self.items += len(batch)
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if len(batch) == 1:
                log.error("receiver store write failed", error=f"{type(exc).__name__}: {exc}")
                if isinstance(exc, _VALUE_ERRORS):
                    exc = UnstorablePayload(
                        f"the receiver cannot store this update ({type(exc).__name__})"
                    )
                _settle([(batch[0], None, exc)])
                return
            for item in batch:  # isolate the failing job: one transaction each
                self._commit(conn, [item])
            return
        _settle([(item, result, None) for item, result in zip(batch, results, strict=True)])


def _apply(conn: sqlite3.Connection, batch: list[_Queued]) -> list[Any]:
    """Run a batch in queue order; consecutive items of one operation go in one call."""
    results: list[Any] = []
    start = 0
    while start < len(batch):
        op = batch[start].op
        if op is None:
            results.append(batch[start].work(conn))
            start += 1
            continue
        end = start + 1
        while end < len(batch) and batch[end].op is op:
            end += 1
        outcome = op.run(conn, [item.work for item in batch[start:end]])
        if len(outcome) != end - start:
            raise RuntimeError(f"{type(op).__name__} returned {len(outcome)} results")
        results.extend(outcome)
        start = end
    return results


def _settle(outcomes: list[tuple[_Queued, Any, BaseException | None]]) -> None:
    """Hand each job's outcome to its waiter: one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
    for item, result, exc in outcomes:
        if item.loop is None:
            future = item.future
            assert isinstance(future, concurrent.futures.Future)
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)
        else:
            assert isinstance(item.future, asyncio.Future)
            by_loop.setdefault(item.loop, []).append((item.future, result, exc))
    for loop, waiters in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting any more
            loop.call_soon_threadsafe(_wake, waiters)


def _wake(waiters: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, exc in waiters:
        if future.done():
            continue
        if exc is None:
            future.set_result(result)
        else:
            known = isinstance(exc, StoreUnavailable | UnstorablePayload)
            future.set_exception(exc if known else StoreUnavailable(_describe(exc)))


_VALUE_ERRORS: Final = (OverflowError, ValueError, TypeError, sqlite3.IntegrityError)
"""Errors an item's own values cause; anything else (a full disk, a lock) may pass."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.Error):
        return "the receiver's store could not commit the update"
    return "the receiver could not record the update"
