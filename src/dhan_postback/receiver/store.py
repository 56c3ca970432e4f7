"""The receiver's SQLite file: every unique update, the order book, quarantine, handler state.

Tables (schema version 1)::

    updates           one row per unique update, in arrival order (``seq``); the raw body,
                      the de-duplication key, whether it moved the book and whether the
                      handlers have run
    orders            the book: one row per (orderId, legName), pointing at the update that
                      set its current state (``last_seq``); see :mod:`.book`
    handler_failures  a handler that raised for an update: attempts, next retry, last error
    quarantine        bodies that could not be read: prefix, headers (redacted), reason

Writes go through one :class:`~.writer.GroupCommitWriter` (WAL, ``synchronous=FULL``): recording
an update and advancing the book happen in one transaction, and the request is answered only
after it commits. Reads use a connection per thread and never block the writer (WAL).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

import msgspec

from .. import payload
from ..files import create_private
from ..payload import ReceivedUpdate
from . import book
from .verify import Postback
from .writer import BatchOp, GroupCommitWriter

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

SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS updates (
    seq            INTEGER PRIMARY KEY,
    dedupe_key     TEXT    NOT NULL UNIQUE,
    webhook_id     TEXT,
    order_id       TEXT    NOT NULL,
    leg_name       TEXT    NOT NULL DEFAULT '',
    client_id      TEXT,
    status         TEXT,
    update_time    TEXT,
    filled_qty     INTEGER NOT NULL,
    unknown_values TEXT,
    applied        INTEGER NOT NULL,
    handled        INTEGER NOT NULL,
    received_at    REAL    NOT NULL,
    body           BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_by_order ON updates (order_id, seq);
CREATE INDEX IF NOT EXISTS updates_unhandled ON updates (seq) WHERE handled = 0;

CREATE TABLE IF NOT EXISTS orders (
    order_id     TEXT    NOT NULL,
    leg_name     TEXT    NOT NULL DEFAULT '',
    client_id    TEXT,
    status       TEXT,
    update_time  TEXT    NOT NULL,
    filled_qty   INTEGER NOT NULL,
    quantity     INTEGER NOT NULL,
    last_seq     INTEGER NOT NULL,
    seen_seq     INTEGER NOT NULL,
    update_count INTEGER NOT NULL,
    PRIMARY KEY (order_id, leg_name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status);
CREATE INDEX IF NOT EXISTS orders_by_client ON orders (client_id);
CREATE INDEX IF NOT EXISTS orders_by_activity ON orders (seen_seq);

CREATE TABLE IF NOT EXISTS handler_failures (
    seq        INTEGER NOT NULL,
    handler    TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    next_at    REAL,
    last_error TEXT    NOT NULL,
    failed_at  REAL    NOT NULL,
    dead       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (seq, handler)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS handler_failures_due ON handler_failures (next_at) WHERE dead = 0;

CREATE TABLE IF NOT EXISTS quarantine (
    id          INTEGER PRIMARY KEY,
    received_at REAL    NOT NULL,
    reason      TEXT    NOT NULL,
    headers     TEXT    NOT NULL,
    body_prefix BLOB    NOT NULL,
    body_size   INTEGER NOT NULL
);
"""

QUARANTINE_PREFIX: Final = 4096
"""Bytes of an unreadable body kept for inspection."""
QUARANTINE_KEEP: Final = 10_000
"""Quarantine rows kept; older ones are dropped so junk cannot fill the disk."""

# ------------------------------------------------------------------------------- queries

_ORDER_COLUMNS: Final = (
    "o.order_id, o.leg_name, o.client_id, o.status, o.update_time, o.filled_qty, o.quantity,"
    " o.last_seq, o.update_count, u.body"
)
_SELECT_ORDERS: Final = (
    f"SELECT {_ORDER_COLUMNS} FROM orders o JOIN updates u ON u.seq = o.last_seq"  # noqa: S608
)
_UPDATE_COLUMNS: Final = (
    "seq, dedupe_key, webhook_id, order_id, leg_name, client_id, status, update_time,"
    " filled_qty, applied, handled, received_at, body, unknown_values"
)
_FAILURE_COLUMNS: Final = "seq, handler, attempts, next_at, last_error, failed_at, dead"


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
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


class _RecordRequest(NamedTuple):
    """What the writer needs to record one update (built on the event loop, cheaply)."""

    dedupe_key: str
    webhook_id: str | None
    order_id: str
    leg_name: str
    client_id: str | None
    status: str | None
    update_time: str | None
    filled_qty: int
    quantity: int
    unknown_values: str | None
    handled: bool
    received_at: float
    body: bytes


def _request(postback: Postback, handled: bool, now: float | None) -> _RecordRequest:
    update = postback.update
    return _RecordRequest(
        postback.dedupe_key,
        postback.webhook_id,
        postback.order_id,
        postback.leg_name or "",
        update.dhan_client_id,
        update.order_status,
        update.update_time,
        update.filled_qty,
        update.quantity,
        ",".join(update.unknown_values) or None,
        handled,
        time.time() if now is None else now,
        postback.body,
    )


_UPDATE_INSERT_COLUMNS: Final = (
    "seq, dedupe_key, webhook_id, order_id, leg_name, client_id, status, update_time,"
    " filled_qty, unknown_values, applied, handled, received_at, body"
)
_ORDER_INSERT_COLUMNS: Final = (
    "order_id, leg_name, client_id, status, update_time, filled_qty, quantity, last_seq,"
    " seen_seq, update_count"
)
_ORDER_UPSERT: Final = (
    " ON CONFLICT (order_id, leg_name) DO UPDATE SET client_id = excluded.client_id,"
    " status = excluded.status, update_time = excluded.update_time,"
    " filled_qty = excluded.filled_qty, quantity = excluded.quantity,"
    " last_seq = excluded.last_seq, seen_seq = excluded.seen_seq,"
    " update_count = excluded.update_count"
)
_MAX_CHUNK: Final = 256
_DUPLICATE: Final = Recorded(seq=None)
_decode_json = msgspec.json.Decoder().decode


_NEXT_SEQ: Final = "SELECT coalesce(max(seq), 0) + 1 FROM updates"
_SELECT_KEYS: Final = "SELECT json_group_array(dedupe_key) FROM updates WHERE dedupe_key IN "
_SELECT_ORDERS_JSON: Final = (
    "SELECT json_group_array(json_array(order_id, leg_name, client_id, status, update_time,"
    " filled_qty, quantity, last_seq, seen_seq, update_count)) FROM orders WHERE order_id IN "
)


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
            list(dict.fromkeys(item.order_id for item in items)),
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
            key = (item.order_id, item.leg_name)
            row = orders.get(key)
            applied = row is None or book.supersedes(_progress(item), row.progress())
            if row is None:
                row = orders[key] = _BookRow.of(item, seq)
            else:
                row.saw(item, seq, applied=applied)
            changed[key] = row
            new_updates.append(_update_row(item, seq, applied))
            results.append(Recorded(seq=seq, applied=applied))
        self._insert(conn, "updates", _UPDATE_INSERT_COLUMNS, 14, "", new_updates)
        order_rows = [(*key, *row.values()) for key, row in changed.items()]
        self._insert(conn, "orders", _ORDER_INSERT_COLUMNS, 10, _ORDER_UPSERT, order_rows)
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
                "select state",
                (len(key_chunk), len(order_chunk)),
                lambda sizes: (
                    f"SELECT ({_SELECT_KEYS}({_marks(sizes[0])})),"
                    f" ({_SELECT_ORDERS_JSON}({_marks(sizes[1])})), ({_NEXT_SEQ})"
                ),
            )
            stored, rows, next_seq = conn.execute(sql, key_chunk + order_chunk).fetchone()
            known.update(_decode_json(stored))
            _add_rows(orders, rows)
            return known, orders, next_seq
        for chunk in key_chunks:
            sql = self._cached("select keys", len(chunk), lambda n: f"{_SELECT_KEYS}({_marks(n)})")
            known.update(_decode_json(conn.execute(sql, chunk).fetchone()[0]))
        for chunk in order_chunks:
            sql = self._cached(
                "select orders", len(chunk), lambda n: f"{_SELECT_ORDERS_JSON}({_marks(n)})"
            )
            _add_rows(orders, conn.execute(sql, chunk).fetchone()[0])
        (next_seq,) = conn.execute(_NEXT_SEQ).fetchone()
        return known, orders, next_seq

    def _insert(
        self,
        conn: sqlite3.Connection,
        table: str,
        columns: str,
        width: int,
        suffix: str,
        rows: list[tuple[Any, ...]],
    ) -> None:
        def build(count: int) -> str:
            values = ", ".join([f"({_marks(width)})"] * count)
            return f"INSERT INTO {table} ({columns}) VALUES {values}{suffix}"  # noqa: S608

        start = 0
        while start < len(rows):
            size = _chunk_size(len(rows) - start)
            params = [value for row in rows[start : start + size] for value in row]
            conn.execute(self._cached(f"insert {table}", size, build), params)
            start += size

    def _cached(self, kind: str, size: S, build: Callable[[S], str]) -> str:
        sql = self._sql.get((kind, size))
        if sql is None:
            sql = self._sql[(kind, size)] = build(size)
        return sql


def _add_rows(orders: dict[tuple[str, str], _BookRow], encoded: str) -> None:
    for row in _decode_json(encoded):
        orders[(row[0], row[1])] = _BookRow(*row[2:])


class _BookRow:
    """An order's row in the book while a batch is being applied."""

    __slots__ = (
        "client_id",
        "filled_qty",
        "last_seq",
        "quantity",
        "seen_seq",
        "status",
        "update_count",
        "update_time",
    )

    def __init__(
        self,
        client_id: str | None,
        status: str | None,
        update_time: str,
        filled_qty: int,
        quantity: int,
        last_seq: int,
        seen_seq: int,
        update_count: int,
    ) -> None:
        self.client_id = client_id
        self.status = status
        self.update_time = update_time
        self.filled_qty = filled_qty
        self.quantity = quantity
        self.last_seq = last_seq
        self.seen_seq = seen_seq
        self.update_count = update_count

    @classmethod
    def of(cls, item: _RecordRequest, seq: int) -> _BookRow:
        return cls(
            item.client_id,
            item.status,
            item.update_time or "",
            item.filled_qty,
            item.quantity,
            seq,
            seq,
            1,
        )

    def progress(self) -> book.Progress:
        return book.Progress(self.update_time, self.status or "", self.filled_qty)

    def saw(self, item: _RecordRequest, seq: int, *, applied: bool) -> None:
        """Count ``item``; take its state when it moved the order forward."""
        if applied:
            self.client_id = item.client_id
            self.status = item.status
            self.update_time = item.update_time or ""
            self.filled_qty = item.filled_qty
            self.quantity = item.quantity
            self.last_seq = seq
        self.seen_seq = seq
        self.update_count += 1

    def values(self) -> tuple[Any, ...]:
        return (
            self.client_id,
            self.status,
            self.update_time,
            self.filled_qty,
            self.quantity,
            self.last_seq,
            self.seen_seq,
            self.update_count,
        )


def _progress(item: _RecordRequest) -> book.Progress:
    return book.Progress(item.update_time or "", item.status or "", item.filled_qty)


def _update_row(item: _RecordRequest, seq: int, applied: bool) -> tuple[Any, ...]:
    """The values for :data:`_UPDATE_INSERT_COLUMNS`."""
    return (
        seq,
        item.dedupe_key,
        item.webhook_id,
        item.order_id,
        item.leg_name,
        item.client_id,
        item.status,
        item.update_time,
        item.filled_qty,
        item.unknown_values,
        applied,
        item.handled,
        item.received_at,
        item.body,
    )


def _marks(count: int) -> str:
    return ", ".join("?" * count)


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
    a running receiver is writing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path == ":memory:" or self.path.startswith("file::memory:"):
            raise ValueError("the receiver needs a file: several connections share it")
        if not self.path.startswith("file:"):
            create_private(self.path)
        conn = _connect(self.path)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            self._migrate(conn)
        finally:
            conn.close()
        self.writer = GroupCommitWriter(lambda: _connect(self.path))
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"the receiver database has schema {version}; this version knows {SCHEMA_VERSION}"
            )
        if version < SCHEMA_VERSION:
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def start(self) -> None:
        self.writer.start()

    def close(self) -> None:
        self.writer.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._local = threading.local()

    # ----------------------------------------------------------------------- writes (jobs)

    def record(
        self, postback: Postback, *, handled: bool, now: float | None = None
    ) -> asyncio.Future[Recorded]:
        """Record ``postback`` and advance the book (from the event loop); the future resolves
        after the commit. ``handled`` is true when no handler needs to run for it."""
        return self.writer.submit_item(_RECORD, _request(postback, handled, now))

    def record_soon(
        self, postback: Postback, *, handled: bool = True, now: float | None = None
    ) -> concurrent.futures.Future[Recorded]:
        """:meth:`record` for code without an event loop."""
        return self.writer.submit_item_sync(_RECORD, _request(postback, handled, now))

    def record_sync(
        self, postback: Postback, *, handled: bool = True, now: float | None = None
    ) -> Recorded:
        """:meth:`record`, blocking until committed."""
        return self.record_soon(postback, handled=handled, now=now).result(30)

    @staticmethod
    def quarantine_job(
        reason: str, headers: Mapping[str, str], body: bytes, *, now: float
    ) -> Callable[[sqlite3.Connection], int]:
        """The writer job keeping an unreadable body (its first bytes) for inspection."""
        encoded = json.dumps(dict(headers), ensure_ascii=False)

        def job(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO quarantine (received_at, reason, headers, body_prefix, body_size)"
                " VALUES (?, ?, ?, ?, ?)",
                (now, reason, encoded, body[:QUARANTINE_PREFIX], len(body)),
            )
            entry_id = cursor.lastrowid
            assert entry_id is not None
            conn.execute("DELETE FROM quarantine WHERE id <= ?", (entry_id - QUARANTINE_KEEP,))
            return entry_id

        return job

    @staticmethod
    def handled_job(
        seq: int, failures: Sequence[tuple[str, str]], *, now: float, next_at: float | None
    ) -> Callable[[sqlite3.Connection], None]:
        """The writer job marking ``seq`` handled, recording the handlers that raised."""

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE updates SET handled = 1 WHERE seq = ?", (seq,))
            conn.executemany(
                "INSERT INTO handler_failures"
                " (seq, handler, attempts, next_at, last_error, failed_at, dead)"
                " VALUES (?, ?, 1, ?, ?, ?, ?) ON CONFLICT (seq, handler) DO UPDATE SET"
                " attempts = attempts + 1, next_at = excluded.next_at,"
                " last_error = excluded.last_error, failed_at = excluded.failed_at,"
                " dead = excluded.dead",
                [(seq, name, next_at, error, now, next_at is None) for name, error in failures],
            )

        return job

    @staticmethod
    def retried_job(
        seq: int, handler: str, error: str | None, *, now: float, next_at: float | None
    ) -> Callable[[sqlite3.Connection], None]:
        """The writer job recording the outcome of retrying one handler for one update."""

        def job(conn: sqlite3.Connection) -> None:
            if error is None:
                conn.execute(
                    "DELETE FROM handler_failures WHERE seq = ? AND handler = ?", (seq, handler)
                )
            else:
                conn.execute(
                    "UPDATE handler_failures SET attempts = attempts + 1, next_at = ?,"
                    " last_error = ?, failed_at = ?, dead = ? WHERE seq = ? AND handler = ?",
                    (next_at, error, now, next_at is None, seq, handler),
                )

        return job

    # ----------------------------------------------------------------------- reads

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _all(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return self._reader().execute(sql, tuple(params)).fetchall()

    def order(self, order_id: str, leg_name: str | None = None) -> OrderRow | None:
        """The book's row for an order; for a bracket order without ``leg_name``, its entry leg
        (or else its first leg)."""
        if leg_name is not None:
            rows = self._all(
                f"{_SELECT_ORDERS} WHERE o.order_id = ? AND o.leg_name = ?", (order_id, leg_name)
            )
        else:
            rows = self._all(
                f"{_SELECT_ORDERS} WHERE o.order_id = ? ORDER BY o.leg_name = '' DESC,"
                " o.leg_name = 'ENTRY_LEG' DESC, o.leg_name",
                (order_id,),
            )
        return _order_row(rows[0]) if rows else None

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
        sql = f"{_SELECT_ORDERS}{where} ORDER BY o.seen_seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_order_row(row) for row in self._all(sql, params)]

    def history(self, order_id: str) -> list[StoredUpdate]:
        """Every unique update of an order (all legs), in arrival order."""
        rows = self._all(
            f"SELECT {_UPDATE_COLUMNS} FROM updates WHERE order_id = ? ORDER BY seq",  # noqa: S608
            (order_id,),
        )
        return [_stored_update(row) for row in rows]

    def history_all(self, *, after: int = 0, limit: int | None = None) -> list[StoredUpdate]:
        """Every unique update of every order, in arrival order (past ``seq`` ``after``)."""
        rows = self._all(
            f"SELECT {_UPDATE_COLUMNS} FROM updates WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
            (after, -1 if limit is None else limit),
        )
        return [_stored_update(row) for row in rows]

    def update(self, seq: int) -> StoredUpdate | None:
        rows = self._all(
            f"SELECT {_UPDATE_COLUMNS} FROM updates WHERE seq = ?",  # noqa: S608
            (seq,),
        )
        return _stored_update(rows[0]) if rows else None

    def unhandled(self, *, after: int = 0, limit: int = 1000) -> list[StoredUpdate]:
        """Updates (past ``seq`` ``after``) whose handlers had not finished when the receiver
        stopped or crashed."""
        rows = self._all(
            f"SELECT {_UPDATE_COLUMNS} FROM updates WHERE handled = 0 AND seq > ?"  # noqa: S608
            " ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [_stored_update(row) for row in rows]

    def handler_failures(
        self, *, due_by: float | None = None, limit: int = 1000
    ) -> list[HandlerFailure]:
        """Recorded handler failures; with ``due_by``, only live ones due by then."""
        if due_by is None:
            rows = self._all(
                f"SELECT {_FAILURE_COLUMNS} FROM handler_failures"  # noqa: S608
                " ORDER BY seq, handler LIMIT ?",
                (limit,),
            )
        else:
            rows = self._all(
                f"SELECT {_FAILURE_COLUMNS} FROM handler_failures"  # noqa: S608
                " WHERE dead = 0 AND next_at <= ? ORDER BY next_at LIMIT ?",
                (due_by, limit),
            )
        return [
            HandlerFailure(
                seq=row[0],
                handler=row[1],
                attempts=row[2],
                next_at=row[3],
                last_error=row[4],
                failed_at=row[5],
                dead=bool(row[6]),
            )
            for row in rows
        ]

    def next_handler_retry(self) -> float | None:
        """When the earliest live handler retry is due."""
        (next_at,) = self._all("SELECT min(next_at) FROM handler_failures WHERE dead = 0")[0]
        return float(next_at) if next_at is not None else None

    def quarantined(self, limit: int = 100) -> list[QuarantineEntry]:
        """The most recent unreadable bodies, newest first."""
        rows = self._all(
            "SELECT id, received_at, reason, headers, body_prefix, body_size FROM quarantine"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            QuarantineEntry(
                id=row[0],
                received_at=row[1],
                reason=row[2],
                headers=json.loads(row[3]),
                body_prefix=bytes(row[4]),
                body_size=row[5],
            )
            for row in rows
        ]

    def counts(self) -> StoreCounts:
        """Totals for a dashboard or a health check."""

        def one(sql: str) -> int:
            return int(self._all(sql)[0][0])

        by_status = {
            str(status): int(count)
            for status, count in self._all(
                "SELECT coalesce(status, ''), count(*) FROM orders GROUP BY status ORDER BY 1"
            )
        }
        return StoreCounts(
            updates=one("SELECT count(*) FROM updates"),
            orders=sum(by_status.values()),
            orders_by_status=by_status,
            quarantined=one("SELECT count(*) FROM quarantine"),
            handlers_unfinished=one("SELECT count(*) FROM updates WHERE handled = 0"),
            handler_failures_pending=one("SELECT count(*) FROM handler_failures WHERE dead = 0"),
            handler_failures_dead=one("SELECT count(*) FROM handler_failures WHERE dead = 1"),
        )


def _filters(*pairs: tuple[str, str | None]) -> tuple[str, list[Any]]:
    clauses = [f"{column} = ?" for column, value in pairs if value is not None]
    params: list[Any] = [value for _, value in pairs if value is not None]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _order_row(row: Sequence[Any]) -> OrderRow:
    return OrderRow(
        order_id=row[0],
        leg_name=row[1] or None,
        client_id=row[2],
        status=row[3],
        update_time=row[4],
        filled_qty=row[5],
        quantity=row[6],
        last_seq=row[7],
        update_count=row[8],
        update=payload.parse(bytes(row[9])),
    )


def _stored_update(row: Sequence[Any]) -> StoredUpdate:
    return StoredUpdate(
        seq=row[0],
        dedupe_key=row[1],
        webhook_id=row[2],
        order_id=row[3],
        leg_name=row[4] or None,
        client_id=row[5],
        status=row[6],
        update_time=row[7],
        filled_qty=row[8],
        applied=bool(row[9]),
        handled=bool(row[10]),
        received_at=row[11],
        body=bytes(row[12]),
        unknown_values=tuple(row[13].split(",")) if row[13] else (),
    )
