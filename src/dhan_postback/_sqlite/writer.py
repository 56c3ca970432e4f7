"""One SQLite writer thread with group commit: durable (``synchronous=FULL``) yet fast.

A fully synchronous commit costs an fsync, so committing once per request caps a store at a
few thousand writes a second. Instead every caller hands its write to this thread and waits;
the thread takes *everything* queued (up to ``max_batch``), runs it in one transaction,
commits once, and then wakes all the waiters together (one wake-up per event loop, not one
per caller). While it is inside an fsync the next batch gathers by itself, so batches grow
exactly when load does; alone, a write waits for nothing. (A timed wait for company, a
"linger", was tried for the receiver and removed: on a quiet machine it cost more than the
commits it saved.)

A writer made ``per_tick`` takes an event loop's items (:meth:`GroupCommitWriter.submit_item`)
one pass of that loop at a time: what the loop's callbacks submit during one pass is handed
over together when the pass has run (``call_soon``), so a batch never starts with a part of
what the loop was about to submit, and the writer thread is woken once per pass instead of
once per item (each wake-up is a GIL hand-over with the busy loop). It waits for no clock: on
a quiet machine the pass ends at once, under load it holds what arrived.

Two kinds of work go in: a :data:`Job` (one callable, run as is) and the item of a
:class:`BatchOp`, where consecutive items of one operation are handed over together, so the
operation can write them all with a few multi-row statements instead of a few each. The
writer shares the GIL with the event loop, and every statement it runs may cost it a wait
for the GIL (up to the 5 ms switch interval while the loop is busy): few statements, not one
per row, is what keeps it fast.

Each job, and each run of consecutive batch items, runs under its own savepoint: what raises
is rolled back alone (a run of items is then retried one item at a time) and its error goes to
its caller, passed through the writer's ``translate`` (a store's own errors for SQLite's);
the rest of the batch commits. A failed BEGIN or COMMIT fails the whole batch with
:class:`~dhan_postback.errors.StoreUnavailable`.

The service's outbox (:mod:`dhan_postback.service.store.sqlite`), the receiver's book
(:mod:`dhan_postback.receiver.store`) and the relay's log (:mod:`dhan_postback.relay.log`)
all write through it.
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

__all__ = ["VALUE_ERRORS", "BatchOp", "GroupCommitWriter", "Job", "unstorable_values"]

log = structlog.get_logger(__name__)

T = TypeVar("T")
P = TypeVar("P")
Job = Callable[[sqlite3.Connection], Any]
"""A unit of work run inside the writer's transaction; its return value is the job's result."""

VALUE_ERRORS: Final = (OverflowError, ValueError, TypeError, sqlite3.IntegrityError)
"""Errors an item's own values cause; anything else (a full disk, a lock) may pass."""


def unstorable_values(exc: Exception) -> BaseException:
    """The default ``translate``: an error of the item's own values is
    :class:`~dhan_postback.errors.UnstorablePayload` (retrying it would fail the same way
    forever); anything else reaches the caller as it is."""
    if isinstance(exc, VALUE_ERRORS):
        return UnstorablePayload(f"this value cannot be stored ({type(exc).__name__})")
    return exc


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


_Outcome = tuple[_Queued, Any, BaseException | None]
_STOP: Final = object()


class GroupCommitWriter:
    """Runs jobs on one connection in one thread; every job's result arrives after its commit.

    ``connect`` runs in the writer's thread when it starts (open, set up and migrate the file
    there); the future :meth:`start` returns says whether it worked. Jobs queued before
    :meth:`start` wait; after :meth:`close` nothing more is taken.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        name: str = "sqlite-writer",
        max_batch: int = 2048,
        per_tick: bool = False,
        translate: Callable[[Exception], BaseException] = unstorable_values,
    ) -> None:
        self._connect = connect
        self._max_batch = max_batch
        self._per_tick = per_tick
        self._gathering: dict[asyncio.AbstractEventLoop, list[_Queued]] = {}
        """Per loop, its items submitted during the current pass (``per_tick`` only)."""
        self._translate = translate
        self._queue: queue.SimpleQueue[_Queued | list[_Queued] | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._closed = False
        self._started = False
        self.commits = 0
        """Transactions committed so far (``items / commits`` is the mean batch size)."""
        self.items = 0

    def start(self) -> concurrent.futures.Future[None]:
        """Start the thread (once); the future resolves when ``connect`` has returned."""
        if not self._started:
            self._started = True
            self._thread.start()
        return self._ready

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
        queued = _Queued(item, op, future, loop)
        if not self._per_tick:
            self._put(queued)
            return future
        if self._closed:
            raise StoreUnavailable("the store is closed")
        gathering = self._gathering.get(loop)
        if gathering is None:
            gathering = self._gathering[loop] = []
            loop.call_soon(self._hand_over, loop)
        gathering.append(queued)
        return future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """At the end of a pass of ``loop``: give the writer what the pass submitted."""
        gathered = self._gathering.pop(loop)
        if self._closed:
            _wake([(item, None, StoreUnavailable("the store is closed")) for item in gathered])
            return
        self._queue.put(gathered)

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
            raise StoreUnavailable("the store is closed")
        self._queue.put(item)

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish every queued job, then stop the thread (call from any thread)."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._queue.put(_STOP)
            self._thread.join(timeout)

    # ---------------------------------------------------------------- the writer thread

    def _main(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._closed = True
            self._ready.set_exception(exc)
            self._fail_queued()
            return
        self._ready.set_result(None)
        try:
            self._serve(conn)
        finally:
            conn.close()

    def _fail_queued(self) -> None:
        failure = StoreUnavailable("the store could not be opened")
        outcomes: list[_Outcome] = []
        with contextlib.suppress(queue.Empty):
            while True:
                item = self._queue.get_nowait()
                if isinstance(item, _Queued):
                    outcomes.append((item, None, failure))
        _settle(outcomes)

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Queued] = []
            if isinstance(first, list):
                batch += first
            else:
                batch.append(first)  # type: ignore[arg-type]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                if isinstance(item, list):
                    batch += item
                else:
                    batch.append(item)  # type: ignore[arg-type]
            self._commit(conn, batch)
            if stop:
                return

    def _commit(self, conn: sqlite3.Connection, batch: list[_Queued]) -> None:
        """Run ``batch`` in one transaction; every item gets its result or its error."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            outcomes = self._apply(conn, batch)
            conn.execute("COMMIT")
        except Exception as exc:  # BEGIN or COMMIT failed (a full disk), or a bug here
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            log.error(
                "sqlite commit failed",
                writer=self._thread.name,
                error=f"{type(exc).__name__}: {exc}",
                items=len(batch),
            )
            failure = StoreUnavailable(f"SQLite commit failed: {exc}")
            outcomes = [(item, None, failure) for item in batch]
        else:
            self.commits += 1
            self.items += len(batch)
        _settle(outcomes)

    def _apply(self, conn: sqlite3.Connection, batch: list[_Queued]) -> list[_Outcome]:
        """Run a batch in queue order; consecutive items of one operation go in one call."""
        outcomes: list[_Outcome] = []
        start = 0
        while start < len(batch):
            op = batch[start].op
            end = start + 1
            if op is not None:
                while end < len(batch) and batch[end].op is op:
                    end += 1
            outcomes += self._run(conn, batch[start:end])
            start = end
        return outcomes

    def _run(self, conn: sqlite3.Connection, run: list[_Queued]) -> list[_Outcome]:
        """One job, or a run of one operation's items, under its own savepoint; if it raises,
        the run is retried one item at a time, so that a failure is one item's alone."""
        conn.execute("SAVEPOINT item")
        try:
            op = run[0].op
            if op is None:
                values = [run[0].work(conn)]
            else:
                values = op.run(conn, [item.work for item in run])
                if len(values) != len(run):
                    raise RuntimeError(f"{type(op).__name__} returned {len(values)} results")
        except Exception as exc:
            conn.execute("ROLLBACK TO item")
            conn.execute("RELEASE item")
            if len(run) > 1:
                return [outcome for item in run for outcome in self._run(conn, [item])]
            return [(run[0], None, self._translate(exc))]
        conn.execute("RELEASE item")
        return [(item, value, None) for item, value in zip(run, values, strict=True)]


def _settle(outcomes: list[_Outcome]) -> None:
    """Hand each job's outcome to its waiter: one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        item, result, exc = outcome
        if item.loop is not None:
            by_loop.setdefault(item.loop, []).append(outcome)
            continue
        future = item.future
        if future.done():
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
    for loop, waiting in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting any more
            loop.call_soon_threadsafe(_wake, waiting)


def _wake(outcomes: list[_Outcome]) -> None:
    for item, result, exc in outcomes:
        future = item.future
        if future.done():
            continue  # the caller gave up (cancelled); the write stands
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
