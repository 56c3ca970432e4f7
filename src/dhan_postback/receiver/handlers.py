"""The trader's handlers: run once per unique update, after it is durable, never blocking the 2xx.

The receiver answers the sender first and hands the update to :class:`HandlerRunner`, which runs
the matching handlers in a task (a sync handler in a worker thread). Handlers of one order run
one update at a time, in arrival order; different orders run side by side.

The store tracks the work: an update is recorded ``handled = 0`` when some handler wants it and
is marked handled once every handler has been called. A handler that raises is logged, counted
and written to ``handler_failures`` with its next retry time; the retry loop calls it again on
a backoff schedule until it succeeds or the schedule runs out (then it is ``dead``, still
visible). After a crash or restart, updates not marked handled run again, and pending retries
resume: at-least-once, as for any webhook consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final, TypeAlias

import structlog

from .store import HandlerFailure, ReceiverStore
from .verify import Postback

__all__ = [
    "DEFAULT_RETRY_DELAYS",
    "Handler",
    "HandlerRegistry",
    "HandlerRunner",
    "handler_name",
]

log = structlog.get_logger(__name__)

Handler: TypeAlias = Callable[[Postback], Awaitable[None] | None]
"""A function of one :class:`~.verify.Postback`, plain or ``async``."""

DEFAULT_RETRY_DELAYS: Final = (1.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 10800.0)
"""Seconds before each retry of a failed handler (about 4.5 hours in all, then dead)."""

_IDLE_RECHECK: Final = 30.0
_MIN_SLEEP: Final = 0.05
_ERROR_TEXT_LIMIT: Final = 500


def handler_name(handler: Handler) -> str:
    """A name stable across restarts, under which a handler's failures are stored."""
    module = getattr(handler, "__module__", None) or "?"
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{name}"


class HandlerRegistry:
    """Which handlers want which statuses."""

    def __init__(self) -> None:
        self._entries: list[tuple[frozenset[str] | None, Handler]] = []
        self._by_name: dict[str, Handler] = {}
        self._cache: dict[str | None, tuple[Handler, ...]] = {}

    def add(self, handler: Handler, statuses: Sequence[str] | None = None) -> None:
        """Register ``handler`` for ``statuses`` (upper-cased), or for every update."""
        wanted = frozenset(s.strip().upper() for s in statuses) if statuses is not None else None
        self._entries.append((wanted, handler))
        self._by_name.setdefault(handler_name(handler), handler)
        self._cache.clear()

    def for_status(self, status: str | None) -> tuple[Handler, ...]:
        """The handlers to call for an update with ``status``, in registration order."""
        found = self._cache.get(status)
        if found is None:
            found = tuple(h for wanted, h in self._entries if wanted is None or status in wanted)
            self._cache[status] = found
        return found

    def named(self, name: str) -> Handler | None:
        return self._by_name.get(name)

    def __bool__(self) -> bool:
        return bool(self._entries)


class HandlerRunner:
    """Runs handlers after the response, records failures, retries them from the store."""

    def __init__(
        self,
        registry: HandlerRegistry,
        store: ReceiverStore,
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        on_failure: Callable[[], None] = lambda: None,
        max_concurrency: int = 64,
    ) -> None:
        self._registry = registry
        self._store = store
        self._retry_delays = tuple(retry_delays)
        self._on_failure = on_failure
        self._max_concurrency = max_concurrency
        self._semaphore: asyncio.Semaphore | None = None
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retry_task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    async def start(self) -> None:
        """Resume unfinished work (run in the serving loop, before the first request)."""
        self._semaphore = asyncio.Semaphore(self._max_concurrency)
        self._wake = asyncio.Event()
        await self._resume_unhandled()
        self._retry_task = asyncio.get_running_loop().create_task(self._retry_loop())

    async def close(self, grace: float = 10.0) -> None:
        """Stop retrying; give running handlers ``grace`` seconds to finish."""
        if self._retry_task is not None:
            self._retry_task.cancel()
            await asyncio.gather(self._retry_task, return_exceptions=True)
            self._retry_task = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)

    async def idle(self) -> None:
        """Wait until no handler task is running (tests and graceful shutdown use it)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def dispatch(self, seq: int, postback: Postback, handlers: Sequence[Handler]) -> None:
        """Run ``handlers`` for a newly recorded update, after earlier ones of its order."""
        order_id = postback.order_id
        previous = self._tails.get(order_id)
        task = asyncio.get_running_loop().create_task(
            self._run_after(previous, seq, postback, tuple(handlers))
        )
        self._tails[order_id] = task
        self._tasks.add(task)
        task.add_done_callback(partial(self._forget, order_id))

    def _forget(self, order_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._tails.get(order_id) is task:
            del self._tails[order_id]

    async def _run_after(
        self,
        previous: asyncio.Task[None] | None,
        seq: int,
        postback: Postback,
        handlers: tuple[Handler, ...],
    ) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        assert self._semaphore is not None
        async with self._semaphore:
            failures: list[tuple[str, str]] = []
            for handler in handlers:
                error = await self._call(handler, postback, seq, attempt=1)
                if error is not None:
                    failures.append((handler_name(handler), error))
            next_at = self._next_retry(1) if failures else None
            try:
                await self._store.handled(seq, failures, now=time.time(), next_at=next_at)
            except Exception as exc:  # the store is closing: the update stays unhandled
                log.error("could not record handler outcome", seq=seq, error=type(exc).__name__)
                return
            if failures and self._wake is not None:
                self._wake.set()

    async def _call(
        self, handler: Handler, postback: Postback, seq: int, *, attempt: int
    ) -> str | None:
        """Call one handler; return the error text when it raised."""
        try:
            if inspect.iscoroutinefunction(handler):
                await handler(postback)
            else:
                result = await asyncio.to_thread(handler, postback)
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:
            self._on_failure()
            error = f"{type(exc).__name__}: {exc}"[:_ERROR_TEXT_LIMIT]
            log.warning(
                "postback handler failed",
                handler=handler_name(handler),
                seq=seq,
                order_id=postback.order_id,
                attempt=attempt,
                error=error,
            )
            return error
        return None

    def _next_retry(self, attempts: int) -> float | None:
        """When to try again after ``attempts`` failures, or None when the schedule is spent."""
        if attempts > len(self._retry_delays):
            return None
        delay = self._retry_delays[attempts - 1]
        return time.time() + delay * random.uniform(0.9, 1.1)

    async def _resume_unhandled(self) -> None:
        after = 0
        while True:
            pending = await asyncio.to_thread(self._store.unhandled, after=after)
            if not pending:
                return
            for stored in pending:
                after = stored.seq
                handlers = self._registry.for_status(stored.status)
                self.dispatch(stored.seq, stored.postback(), handlers)

    async def _retry_loop(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            due = await asyncio.to_thread(self._store.handler_failures, due_by=time.time())
            for failure in due:
                await self._retry(failure)
            next_at = await asyncio.to_thread(self._store.next_handler_retry)
            delay = _IDLE_RECHECK if next_at is None else next_at - time.time()
            delay = min(max(delay, _MIN_SLEEP), _IDLE_RECHECK)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _retry(self, failure: HandlerFailure) -> None:
        attempt = failure.attempts + 1
        handler = self._registry.named(failure.handler)
        stored = await asyncio.to_thread(self._store.update, failure.seq)
        if handler is None or stored is None:
            error: str | None = "handler is not registered in this receiver"
        else:
            error = await self._call(handler, stored.postback(), failure.seq, attempt=attempt)
        next_at = self._next_retry(attempt) if error is not None else None
        await self._store.retried(
            failure.seq, failure.handler, error, now=time.time(), next_at=next_at
        )
