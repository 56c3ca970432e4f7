"""The receiver's SQLite file: every unique update, the order book, quarantine, handler state.

Tables (schema version 1)::

    updates           one row per unique update, in arrival order (``seq``); the raw body,
                      the de-duplication key, whether it moved the book and whether the
                      handlers have run
    orders            the book: one row per (orderId, legName), pointing at the update that
                      set its current state (``last_seq``); see :mod:`.book`
    handler_failures  a handler that raised for an update: attempts, next retry, last error
    quarantine        bodies that could not be read: prefix, headers (redacted), reason

Writes go through the store's own :class:`~dhan_postback._sqlite.GroupCommitWriter` (WAL,
``synchronous=FULL``): recording an update and advancing the book happen in one transaction,
and the request is answered only after it commits. Reads use a connection per thread and
never block the writer (WAL). The SQL lives in ``sql/store.sql``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

import msgspec
import structlog

from .. import payload
from .._sqlite import VALUE_ERRORS, BatchOp, GroupCommitWriter, load_queries, migrate, migrations
from ..errors import StoreUnavailable, UnstorablePayload
from ..files import create_private
from ..payload import ReceivedUpdate
from . import book
from .facts import Facts, facts_of
from .verify import Postback

__all__ = [
    "QUARANTINE_KEEP",
    "QUARANTINE_PREFIX",
    "SCHEMA_VERSION",
    "HandlerFailure",
    "OrderRow",
    "QuarantineEntry",
    "ReceiverStore",
    "Recorded",
    "StoreCounts",
    "StoredUpdate",
]

S = TypeVar("S")

log = structlog.get_logger(__name__)

_SQL: Final = load_queries(__package__, "store")
_MIGRATIONS: Final = migrations(_SQL)
SCHEMA_VERSION: Final = _MIGRATIONS[-1][0]

QUARANTINE_PREFIX: Final = 4096
"""Bytes of an unreadable body kept for inspection."""
QUARANTINE_KEEP: Final = 10_000
"""Quarantine rows kept; older ones are dropped so junk cannot fill the disk."""

# ------------------------------------------------------------------------------- rows


class Recorded(msgspec.Struct, frozen=True):
    """What recording one postback did: ``seq`` is None for a duplicate."""

    seq: int | None
    applied: bool = False

    @property
    def duplicate(self) -> bool:
        return self.seq is None


class OrderRow(msgspec.Struct, frozen=True):
    """One order (or bracket-order leg) as the book has it now."""

    order_id: str
    leg_name: str | None
    client_id: str | None
    status: str | None
    update_time: str
    filled_qty: int
    quantity: int
    last_seq: int
    """The update that set this state."""
    update_count: int
    """Unique updates received for this order, including those that did not move it."""
    update: ReceivedUpdate


class StoredUpdate(msgspec.Struct, frozen=True):
    """One unique update as it arrived."""

    seq: int
    dedupe_key: str
    webhook_id: str | None
    order_id: str
    leg_name: str | None
    client_id: str | None
    status: str | None
    update_time: str | None
    filled_qty: int
    applied: bool
    """Whether it moved the order book when it arrived."""
    handled: bool
    received_at: float
    body: bytes
    unknown_values: tuple[str, ...] = ()
    """Values the parser did not know, as ``field=value`` (an unknown status, say)."""

    def postback(self) -> Postback:
        """The update as handlers receive it."""
        return Postback(
            update=payload.parse(self.body),
            body=self.body,
            dedupe_key=self.dedupe_key,
            webhook_id=self.webhook_id,
        )


class HandlerFailure(msgspec.Struct, frozen=True):
    """A handler that raised for an update, and when it runs again (``None`` once dead)."""

    seq: int
    handler: str
    attempts: int
    next_at: float | None
    last_error: str
    failed_at: float
    dead: bool


class QuarantineEntry(msgspec.Struct, frozen=True):
    """A body that could not be read, kept so someone can see what the sender sent."""

    id: int
    received_at: float
    reason: str
    headers: dict[str, str]
    body_prefix: bytes
    body_size: int


class StoreCounts(msgspec.Struct, frozen=True):
    updates: int
    orders: int
    orders_by_status: dict[str, int]
    quarantined: int
    handlers_unfinished: int
    """Updates whose handlers have not all run yet."""
    handler_failures_pending: int
    handler_failures_dead: int


# ------------------------------------------------------------------------------- the store


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=30, cached_statements=256
    )
    conn.executescript(_SQL["connection_settings"])
    return conn


class _RecordRequest(NamedTuple):
    """What the writer needs to record one update (built on the event loop, cheaply)."""

    facts: Facts
    dedupe_key: str
    webhook_id: str | None
    handled: bool
    received_at: float
    body: bytes


def _request(
    facts: Facts,
    body: bytes,
    dedupe_key: str,
    webhook_id: str | None,
    handled: bool,
    now: float | None,
) -> _RecordRequest:
    return _RecordRequest(
        facts, dedupe_key, webhook_id, handled, time.time() if now is None else now, body
    )


def _postback_request(postback: Postback, handled: bool, now: float | None) -> _RecordRequest:
    facts = facts_of(postback.update)
    return _request(facts, postback.body, postback.dedupe_key, postback.webhook_id, handled, now)


_MAX_CHUNK: Final = 256
_DUPLICATE: Final = Recorded(seq=None)
_decode_json = msgspec.json.Decoder().decode


class _RecordOp(BatchOp[_RecordRequest, Recorded]):
    """Record a batch of updates and advance the book with a handful of statements.

    Per batch: one query for the keys already stored, one for the current rows of the orders
    concerned (each answers in a single JSON row), one multi-row insert of the new updates
    and one multi-row upsert of the orders, whatever the batch size (chunked by powers of two,
    so a few prepared statements serve every size). The decisions are :func:`book.supersedes`,
    made in Python in arrival order, duplicates within the batch included.
    """

    def __init__(self) -> None:
        self._sql: dict[tuple[str, object], str] = {}

    def run(self, conn: sqlite3.Connection, items: list[_RecordRequest]) -> list[Recorded]:
        known, orders, next_seq = self._read_state(
            conn,
            list(dict.fromkeys(item.dedupe_key for item in items)),
            list(dict.fromkeys(item.facts.order_id for item in items)),
        )
        changed: dict[tuple[str, str], _BookRow] = {}
        new_updates: list[tuple[Any, ...]] = []
        results: list[Recorded] = []
        for item in items:
            if item.dedupe_key in known:
                results.append(_DUPLICATE)
                continue
            known.add(item.dedupe_key)
            seq = next_seq
            next_seq += 1
            facts = item.facts
            key = (facts.order_id, facts.leg_name)
            row = orders.get(key)
            applied = row is None or book.supersedes(_progress(facts), _progress(row.state))
            if row is None:
                row = orders[key] = _BookRow(facts, seq, seq, 1)
            else:
                row.saw(facts, seq, applied=applied)
            changed[key] = row
            new_updates.append(_update_row(item, seq, applied))
            results.append(Recorded(seq=seq, applied=applied))
        self._insert(conn, "insert_updates", 14, new_updates)
        order_rows = [row.values() for row in changed.values()]
        self._insert(conn, "upsert_orders", 10, order_rows)
        return results

    def _read_state(
        self, conn: sqlite3.Connection, keys: list[str], order_ids: list[str]
    ) -> tuple[set[str], dict[tuple[str, str], _BookRow], int]:
        """Which keys are stored, the orders' current rows, and the next ``seq``: in one
        statement answering one row when the batch is small enough (it nearly always is)."""
        key_chunks, order_chunks = _padded_chunks(keys), _padded_chunks(order_ids)
        known: set[str] = set()
        orders: dict[tuple[str, str], _BookRow] = {}
        if len(key_chunks) == 1 and len(order_chunks) == 1:
            (key_chunk,), (order_chunk,) = key_chunks, order_chunks
            sql = self._cached(
                "batch_state",
                (len(key_chunk), len(order_chunk)),
                lambda sizes: _SQL["batch_state"].format(
                    known_keys=_in("known_keys", sizes[0]),
                    book_rows=_in("book_rows", sizes[1]),
                    next_seq=_SQL["next_seq"],
                ),
            )
            stored, rows, next_seq = conn.execute(sql, key_chunk + order_chunk).fetchone()
            known.update(_decode_json(stored))
            _add_rows(orders, rows)
            return known, orders, next_seq
        for chunk in key_chunks:
            sql = self._cached("known_keys", len(chunk), lambda n: _in("known_keys", n))
            known.update(_decode_json(conn.execute(sql, chunk).fetchone()[0]))
        for chunk in order_chunks:
            sql = self._cached("book_rows", len(chunk), lambda n: _in("book_rows", n))
            _add_rows(orders, conn.execute(sql, chunk).fetchone()[0])
        (next_seq,) = conn.execute(_SQL["next_seq"]).fetchone()
        return known, orders, next_seq

    def _insert(
        self, conn: sqlite3.Connection, name: str, width: int, rows: list[tuple[Any, ...]]
    ) -> None:
        """Run the multi-row insert ``name`` (rows of ``width`` values) in chunks."""

        def build(count: int) -> str:
            return _SQL[name].format(rows=", ".join([f"({_marks(width)})"] * count))

        start = 0
        while start < len(rows):
            size = _chunk_size(len(rows) - start)
            params = [value for row in rows[start : start + size] for value in row]
            conn.execute(self._cached(name, size, build), params)
            start += size

    def _cached(self, kind: str, size: S, build: Callable[[S], str]) -> str:
        sql = self._sql.get((kind, size))
        if sql is None:
            sql = self._sql[(kind, size)] = build(size)
        return sql


def _add_rows(orders: dict[tuple[str, str], _BookRow], encoded: str) -> None:
    for row in _decode_json(encoded):
        order_id, leg, client_id, status, update_time, filled, quantity, *seqs = row
        state = Facts(order_id, leg, client_id, status, update_time, filled, quantity, None)
        orders[(order_id, leg)] = _BookRow(state, *seqs)


@dataclass(slots=True)
class _BookRow:
    """An order's row in the book while a batch is being applied."""

    state: Facts
    """The facts of the update that set the order's current state (``last_seq``)."""
    last_seq: int
    seen_seq: int
    update_count: int

    def saw(self, facts: Facts, seq: int, *, applied: bool) -> None:
        """Count an update; take its state when it moved the order forward."""
        if applied:
            self.state = facts
            self.last_seq = seq
        self.seen_seq = seq
        self.update_count += 1

    def values(self) -> tuple[Any, ...]:
        """The values of one row of ``upsert_orders``."""
        state = self.state
        return (
            state.order_id,
            state.leg_name,
            state.client_id,
            state.status,
            state.update_time or "",
            state.filled_qty,
            state.quantity,
            self.last_seq,
            self.seen_seq,
            self.update_count,
        )


def _progress(facts: Facts) -> book.Progress:
    return book.Progress(facts.update_time or "", facts.status or "", facts.filled_qty)


def _update_row(item: _RecordRequest, seq: int, applied: bool) -> tuple[Any, ...]:
    """The values of one row of ``insert_updates``."""
    facts = item.facts
    return (
        seq,
        item.dedupe_key,
        item.webhook_id,
        facts.order_id,
        facts.leg_name,
        facts.client_id,
        facts.status,
        facts.update_time,
        facts.filled_qty,
        facts.unknown_values,
        applied,
        item.handled,
        item.received_at,
        item.body,
    )


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _in(name: str, count: int) -> str:
    """The query ``name`` with ``count`` marks in its ``IN`` list."""
    return _SQL[name].format(marks=_marks(count))


def _chunk_size(remaining: int) -> int:
    """The largest power of two up to ``remaining`` (and :data:`_MAX_CHUNK`)."""
    return min(1 << (remaining.bit_length() - 1), _MAX_CHUNK)


def _padded_chunks(values: list[str]) -> list[list[str]]:
    """``values`` in chunks whose sizes are powers of two, the last padded by repetition
    (harmless in an ``IN`` list), so that few distinct statements are ever prepared."""
    chunks = []
    for start in range(0, len(values), _MAX_CHUNK):
        chunk = values[start : start + _MAX_CHUNK]
        size = 1 << (len(chunk) - 1).bit_length()
        chunks.append(chunk + [chunk[-1]] * (size - len(chunk)))
    return chunks


_RECORD: Final = _RecordOp()


class ReceiverStore:
    """The receiver's SQLite file. Open it, :meth:`start` the writer, :meth:`close` at the end.

    Readers (the query methods) work without starting the writer, so a CLI can inspect a file
    a running receiver is writing. Writes go through the store's own writer: :meth:`record`
    and friends from the event loop, :meth:`record_soon` from code without one.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path == ":memory:" or self.path.startswith("file::memory:"):
            raise ValueError("the receiver needs a file: several connections share it")
        if not self.path.startswith("file:"):
            create_private(self.path)
        conn = _connect(self.path)
        try:
            conn.executescript(_SQL["file_settings"])
            migrate(conn, _MIGRATIONS, too_new=_too_new)
        finally:
            conn.close()
        self._writer = GroupCommitWriter(
            lambda: _connect(self.path),
            name="receiver-writer",
            # One batch per pass of the event loop, not a timed linger: a 1 ms linger made
            # B4 slower on a quiet machine (0.64x against 0.72x without), where a pass ends
            # at once; per pass, batches still grow under load and the writer thread wakes
            # once per pass instead of once per postback.
            per_tick=True,
            translate=_write_error,
        )
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def start(self) -> None:
        self._writer.start()

    @property
    def writing(self) -> bool:
        """Whether the writer is running (started and not closed)."""
        return self._writer.alive

    def close(self) -> None:
        self._writer.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._local = threading.local()

    # ----------------------------------------------------------------------- writes

    def record(
        self, postback: Postback, *, handled: bool, now: float | None = None
    ) -> asyncio.Future[Recorded]:
        """Record ``postback`` and advance the book (from the event loop); the future resolves
        after the commit. ``handled`` is true when no handler needs to run for it."""
        return self._writer.submit_item(_RECORD, _postback_request(postback, handled, now))

    def record_facts(
        self,
        facts: Facts,
        body: bytes,
        *,
        dedupe_key: str,
        webhook_id: str | None,
        handled: bool,
        now: float | None = None,
    ) -> asyncio.Future[Recorded]:
        """:meth:`record` from what :func:`~.facts.read_facts` read, without a
        :class:`Postback` (the receiver's hot path)."""
        request = _request(facts, body, dedupe_key, webhook_id, handled, now)
        return self._writer.submit_item(_RECORD, request)

    def record_soon(
        self, postback: Postback, *, handled: bool = True, now: float | None = None
    ) -> concurrent.futures.Future[Recorded]:
        """:meth:`record` for code without an event loop."""
        return self._writer.submit_item_sync(_RECORD, _postback_request(postback, handled, now))

    def record_sync(
        self, postback: Postback, *, handled: bool = True, now: float | None = None
    ) -> Recorded:
        """:meth:`record`, blocking until committed."""
        return self.record_soon(postback, handled=handled, now=now).result(30)

    async def quarantine(
        self, reason: str, headers: Mapping[str, str], body: bytes, *, now: float
    ) -> int:
        """Keep an unreadable body (its first bytes) for inspection; the entry's id."""
        encoded = json.dumps(dict(headers), ensure_ascii=False)

        def job(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                _SQL["quarantine"], (now, reason, encoded, body[:QUARANTINE_PREFIX], len(body))
            )
            entry_id = cursor.lastrowid
            assert entry_id is not None
            conn.execute(_SQL["trim_quarantine"], (entry_id - QUARANTINE_KEEP,))
            return entry_id

        return await self._writer.submit(job)

    async def handled(
        self, seq: int, failures: Sequence[tuple[str, str]], *, now: float, next_at: float | None
    ) -> None:
        """Mark ``seq`` handled, recording the handlers that raised (``(name, error)``)."""

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(_SQL["mark_handled"], (seq,))
            conn.executemany(
                _SQL["handler_failed"],
                [(seq, name, next_at, error, now, next_at is None) for name, error in failures],
            )

        await self._writer.submit(job)

    async def retried(
        self, seq: int, handler: str, error: str | None, *, now: float, next_at: float | None
    ) -> None:
        """Record the outcome of retrying one handler for one update (``error`` None: done)."""

        def job(conn: sqlite3.Connection) -> None:
            if error is None:
                conn.execute(_SQL["handler_retried"], (seq, handler))
            else:
                conn.execute(
                    _SQL["handler_failed_again"],
                    (next_at, error, now, next_at is None, seq, handler),
                )

        await self._writer.submit(job)

    # ----------------------------------------------------------------------- reads

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.executescript(_SQL["reader_settings"])
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _all(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return self._reader().execute(sql, tuple(params)).fetchall()

    def _orders(self, where: str, order: str, params: Iterable[Any]) -> list[OrderRow]:
        sql = _SQL["orders"].format(where=where, order=order)
        return [_order_row(row) for row in self._all(sql, params)]

    def _updates(self, where: str, params: Iterable[Any]) -> list[StoredUpdate]:
        sql = _SQL["updates"].format(where=where)
        return [_stored_update(row) for row in self._all(sql, params)]

    def order(self, order_id: str, leg_name: str | None = None) -> OrderRow | None:
        """The book's row for an order; for a bracket order without ``leg_name``, its entry leg
        (or else its first leg)."""
        if leg_name is not None:
            rows = self._orders(
                "o.order_id = ? AND o.leg_name = ?", "o.leg_name", (order_id, leg_name, 1)
            )
        else:
            rows = self._orders(
                "o.order_id = ?",
                "o.leg_name = '' DESC, o.leg_name = 'ENTRY_LEG' DESC, o.leg_name",
                (order_id, 1),
            )
        return rows[0] if rows else None

    def orders(
        self,
        *,
        order_id: str | None = None,
        status: str | None = None,
        client_id: str | None = None,
        limit: int | None = None,
    ) -> list[OrderRow]:
        """Rows of the book, most recently active first, filtered by any of the arguments."""
        where, params = _filters(
            ("o.order_id", order_id), ("o.status", status), ("o.client_id", client_id)
        )
        return self._orders(where, "o.seen_seq DESC", [*params, _no_limit(limit)])

    def history(self, order_id: str) -> list[StoredUpdate]:
        """Every unique update of an order (all legs), in arrival order."""
        return self._updates("order_id = ?", (order_id, -1))

    def history_all(self, *, after: int = 0, limit: int | None = None) -> list[StoredUpdate]:
        """Every unique update of every order, in arrival order (past ``seq`` ``after``)."""
        return self._updates("seq > ?", (after, _no_limit(limit)))

    def update(self, seq: int) -> StoredUpdate | None:
        rows = self._updates("seq = ?", (seq, 1))
        return rows[0] if rows else None

    def unhandled(self, *, after: int = 0, limit: int = 1000) -> list[StoredUpdate]:
        """Updates (past ``seq`` ``after``) whose handlers had not finished when the receiver
        stopped or crashed."""
        return self._updates("handled = 0 AND seq > ?", (after, limit))

    def handler_failures(
        self, *, due_by: float | None = None, limit: int = 1000
    ) -> list[HandlerFailure]:
        """Recorded handler failures; with ``due_by``, only live ones due by then."""
        if due_by is None:
            sql = _SQL["handler_failures"].format(where="1 = 1", order="seq, handler")
            rows = self._all(sql, (limit,))
        else:
            sql = _SQL["handler_failures"].format(
                where="dead = 0 AND next_at <= ?", order="next_at"
            )
            rows = self._all(sql, (due_by, limit))
        return [_handler_failure(*row) for row in rows]

    def next_handler_retry(self) -> float | None:
        """When the earliest live handler retry is due."""
        (next_at,) = self._all(_SQL["next_handler_retry"])[0]
        return float(next_at) if next_at is not None else None

    def quarantined(self, limit: int = 100) -> list[QuarantineEntry]:
        """The most recent unreadable bodies, newest first."""
        return [
            QuarantineEntry(entry_id, at, reason, json.loads(headers), bytes(prefix), size)
            for entry_id, at, reason, headers, prefix, size in self._all(
                _SQL["quarantined"], (limit,)
            )
        ]

    def counts(self) -> StoreCounts:
        """Totals for a dashboard or a health check."""
        by_status = {
            str(status): int(count) for status, count in self._all(_SQL["orders_by_status"])
        }
        updates, quarantined, unfinished, pending, dead = self._all(_SQL["counts"])[0]
        return StoreCounts(
            updates=updates,
            orders=sum(by_status.values()),
            orders_by_status=by_status,
            quarantined=quarantined,
            handlers_unfinished=unfinished,
            handler_failures_pending=pending,
            handler_failures_dead=dead,
        )


def _handler_failure(
    seq: int, handler: str, attempts: int, next_at: float | None, error: str, at: float, dead: int
) -> HandlerFailure:
    return HandlerFailure(seq, handler, attempts, next_at, error, at, bool(dead))


def _no_limit(limit: int | None) -> int:
    return -1 if limit is None else limit


def _too_new(found: int, known: int) -> Exception:
    return RuntimeError(f"the receiver database has schema {found}; this version knows {known}")


def _write_error(exc: Exception) -> BaseException:
    """What a write's caller gets for its error: an update that cannot be stored on its own
    values is :class:`~dhan_postback.errors.UnstorablePayload` (4xx: retrying cannot help),
    anything else :class:`~dhan_postback.errors.StoreUnavailable` (5xx: try again)."""
    log.error("receiver store write failed", error=f"{type(exc).__name__}: {exc}")
    if isinstance(exc, StoreUnavailable | UnstorablePayload):
        return exc
    if isinstance(exc, VALUE_ERRORS):
        return UnstorablePayload(f"the receiver cannot store this update ({type(exc).__name__})")
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable("the receiver's store could not commit the update")
    return StoreUnavailable("the receiver could not record the update")


def _filters(*pairs: tuple[str, str | None]) -> tuple[str, list[Any]]:
    clauses = [f"{column} = ?" for column, value in pairs if value is not None]
    params: list[Any] = [value for _, value in pairs if value is not None]
    return (" AND ".join(clauses) or "1 = 1"), params


def _order_row(row: Sequence[Any]) -> OrderRow:
    """From a row of ``orders``: the book's columns, then the body of the update."""
    order_id, leg, client_id, status, update_time, filled, quantity, last_seq, count, body = row
    head = (order_id, leg or None, client_id, status, update_time)
    return OrderRow(*head, filled, quantity, last_seq, count, payload.parse(bytes(body)))


def _stored_update(row: Sequence[Any]) -> StoredUpdate:
    """From a row of ``updates`` (its columns in :class:`StoredUpdate`'s order)."""
    seq, key, webhook_id, order_id, leg, client_id, status, update_time, *rest = row
    filled, applied, handled, received_at, body, unknown = rest
    seen = (filled, bool(applied), bool(handled), received_at, bytes(body))
    unknown_values = tuple(unknown.split(",")) if unknown else ()
    head = (seq, key, webhook_id, order_id, leg or None, client_id, status, update_time)
    return StoredUpdate(*head, *seen, unknown_values)
