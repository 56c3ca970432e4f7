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

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from .. import payload
from ..payload import ReceivedUpdate
from . import book
from .verify import Postback
from .writer import GroupCommitWriter

__all__ = [
    "HandlerFailure",
    "OrderRow",
    "QuarantineEntry",
    "ReceiverStore",
    "Recorded",
    "StoreCounts",
    "StoredUpdate",
]

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

_SELECT_PROGRESS: Final = (
    "SELECT update_time, status, filled_qty FROM orders WHERE order_id = ? AND leg_name = ?"
)
_INSERT_UPDATE: Final = (
    "INSERT INTO updates (dedupe_key, webhook_id, order_id, leg_name, client_id, status,"
    " update_time, filled_qty, unknown_values, applied, handled, received_at, body)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING"
)
_INSERT_ORDER: Final = (
    "INSERT INTO orders (order_id, leg_name, client_id, status, update_time, filled_qty,"
    " quantity, last_seq, seen_seq, update_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)"
)
_ADVANCE_ORDER: Final = (
    "UPDATE orders SET client_id = ?, status = ?, update_time = ?, filled_qty = ?, quantity = ?,"
    " last_seq = ?, seen_seq = ?, update_count = update_count + 1"
    " WHERE order_id = ? AND leg_name = ?"
)
_TOUCH_ORDER: Final = (
    "UPDATE orders SET seen_seq = ?, update_count = update_count + 1"
    " WHERE order_id = ? AND leg_name = ?"
)
_ORDER_COLUMNS: Final = (
    "o.order_id, o.leg_name, o.client_id, o.status, o.update_time, o.filled_qty, o.quantity,"
    " o.last_seq, o.update_count, u.body"
)
_SELECT_ORDERS: Final = (
    f"SELECT {_ORDER_COLUMNS} FROM orders o JOIN updates u ON u.seq = o.last_seq"  # noqa: S608
)
_UPDATE_COLUMNS: Final = (
    "seq, dedupe_key, webhook_id, order_id, leg_name, client_id, status, update_time,"
    " filled_qty, applied, handled, received_at, body"
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
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


class ReceiverStore:
    """The receiver's SQLite file. Open it, :meth:`start` the writer, :meth:`close` at the end.

    Readers (the query methods) work without starting the writer, so a CLI can inspect a file
    a running receiver is writing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path == ":memory:" or self.path.startswith("file::memory:"):
            raise ValueError("the receiver needs a file: several connections share it")
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

    @staticmethod
    def record_job(
        postback: Postback, *, handled: bool, now: float
    ) -> Callable[[sqlite3.Connection], Recorded]:
        """The writer job recording ``postback`` and advancing the book, returning
        :class:`Recorded`. ``handled`` is true when no handler needs to run for it."""
        update = postback.update
        fields = update.fields
        order_id = postback.order_id
        leg = postback.leg_name or ""
        status = update.order_status
        update_time = update.update_time or ""
        filled = update.filled_qty
        client_id = update.dhan_client_id
        unknown = ",".join(update.unknown_values) or None
        incoming = book.Progress(update_time, status or "", filled)

        def job(conn: sqlite3.Connection) -> Recorded:
            row = conn.execute(_SELECT_PROGRESS, (order_id, leg)).fetchone()
            current = book.Progress(*row) if row is not None else None
            applied = book.supersedes(incoming, current)
            cursor = conn.execute(
                _INSERT_UPDATE,
                (
                    postback.dedupe_key,
                    postback.webhook_id,
                    order_id,
                    leg,
                    client_id,
                    status,
                    fields.get("updateTime"),
                    filled,
                    unknown,
                    applied,
                    handled,
                    now,
                    postback.body,
                ),
            )
            if cursor.rowcount == 0:
                return Recorded(seq=None)
            seq = cursor.lastrowid
            assert seq is not None
            if current is None:
                conn.execute(
                    _INSERT_ORDER,
                    (
                        order_id,
                        leg,
                        client_id,
                        status,
                        update_time,
                        filled,
                        update.quantity,
                        seq,
                        seq,
                    ),
                )
            elif applied:
                conn.execute(
                    _ADVANCE_ORDER,
                    (
                        client_id,
                        status,
                        update_time,
                        filled,
                        update.quantity,
                        seq,
                        seq,
                        order_id,
                        leg,
                    ),
                )
            else:
                conn.execute(_TOUCH_ORDER, (seq, order_id, leg))
            return Recorded(seq=seq, applied=applied)

        return job

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
    )
