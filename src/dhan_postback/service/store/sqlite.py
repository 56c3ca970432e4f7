"""The SQLite store: one file in WAL mode, every write through one thread with group commit.

Durability costs one fsync per commit (``synchronous=FULL``), a few thousand per second at
best, so commits are shared: callers put their operation on a queue and wait on a future;
the writer thread takes every operation waiting, runs them in one transaction (each under
its own savepoint, so one failing operation fails alone), commits once, then resolves all the
futures. Under load one commit carries many requests; alone, a request waits for nothing.
That writer is :class:`~dhan_postback._sqlite.GroupCommitWriter`, the one the receiver and
the relay write through too.

Reads (the delivery log, token look-ups, counts) run on a separate connection in a reader
thread: WAL lets them proceed while the writer writes, and they see every committed write.

The writer shares the GIL with the event loop, and each statement it runs may cost it a wait
for the GIL (up to the 5 ms switch interval while the loop is busy). So consecutive enqueues
are inserted by one statement (the batch as JSON, read by ``json_each``), never row by row.
Payloads are JSON, hence UTF-8 text, which is what lets them travel inside that JSON.

The SQL lives in ``sql/sqlite.sql``; this module only moves rows in and out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import heapq
import itertools
import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

import msgspec
import structlog

from ..._sqlite import BatchOp, GroupCommitWriter, migrate
from ...errors import Conflict, StoreUnavailable
from ...files import create_private
from . import base
from .queries import load_queries, migrations

__all__ = ["Row", "SQLiteStore", "sqlite_path"]

log = structlog.get_logger(__name__)

T = TypeVar("T")
Row = tuple[Any, ...]

_QUERIES: Final = load_queries("sqlite")
_LAST_ATTEMPT: Final = {
    kind: _QUERIES["last_attempt"].format(owner=column)
    for kind, column in base.OWNER_COLUMNS.items()
}
_VACUUM_PAGES_PER_BATCH: Final = 4096
"""At most this many free pages (16 MiB) go back to the file system per pruning batch, so
that a batch holds the writer briefly; the rest go with the next batches."""
_MAX_OPS_PER_COMMIT: Final = 512
"""A bound on one transaction, so that a flood of writes still commits regularly."""
_SKIPPING_SCAN_FACTOR: Final = 4
"""A claim that skips URLs first reads this many times its limit of the oldest due heads
(``select_due_head_urls``); see :func:`_due_heads_skipping`."""

_FILTERS: Final[Mapping[str, str]] = {
    # DeliveryQuery field -> its SQL term (parameters named after the field)
    "status": "status = :status",
    "order_id": "order_id = :order_id",
    "dhan_client_id": "dhan_client_id = :dhan_client_id",
    "target": "target = :target",
    "partner_id": "partner_id = :partner_id",
    "since": "created_at >= :since",
    "until": "created_at < :until",
    "ids": "id IN (SELECT value FROM json_each(:ids))",
}


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///relative/path`` or ``sqlite:////absolute/path`` URL."""
    prefix = "sqlite://"
    if not url.lower().startswith(prefix):
        raise ValueError(f"not a sqlite URL: {url!r} (use sqlite:///path/to/file.db)")
    rest = url[len(prefix) :]
    if not rest.startswith("/") or len(rest) < 2:
        raise ValueError(f"a sqlite URL names a file: sqlite:///path/to/file.db, not {url!r}")
    path = rest[1:].split("?", 1)[0]
    if path in ("", ":memory:"):
        raise ValueError("the SQLite store needs a file (readers and the writer share it)")
    return path


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.executescript(_QUERIES["connection_settings"])
    return conn


def _translate(exc: sqlite3.Error) -> Exception:
    """A store error for a SQLite error; SQLite's messages carry no row values."""
    if isinstance(exc, sqlite3.IntegrityError):
        return Conflict(f"already stored ({exc})")
    return StoreUnavailable(f"SQLite: {exc}")


def _translate_any(exc: Exception) -> BaseException:
    return _translate(exc) if isinstance(exc, sqlite3.Error) else exc


def _open_writer(path: str) -> sqlite3.Connection:
    """The writer's connection, in its thread: create the file, bring its schema up to date
    (with incremental vacuum, see :func:`_enable_incremental_vacuum`)."""
    create_private(path)
    conn = _connect(path)
    try:
        (current,) = conn.execute("PRAGMA user_version").fetchone()
        if current == 0:
            _enable_incremental_vacuum(conn)  # a new file: instant, before any table exists
        migrate(conn, migrations(_QUERIES), too_new=_too_new)
        _enable_incremental_vacuum(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _too_new(found: int, known: int) -> Exception:
    return StoreUnavailable(
        f"the database has schema version {found}, newer than this dhan-postback "
        f"understands ({known}); upgrade dhan-postback"
    )


_Enqueued = tuple[Sequence[base.NewDelivery], base.HandOver | None]


class _Enqueue(BatchOp[_Enqueued, list[base.Claim] | None]):
    """Consecutive enqueues, inserted by one statement (see the module docstring); then the
    hand-overs of those that have one, all with a few statements."""

    def run(
        self, conn: sqlite3.Connection, items: list[_Enqueued]
    ) -> list[list[base.Claim] | None]:
        _insert_deliveries(conn, [new for deliveries, _ in items for new in deliveries])
        offered = [(deliveries, hand_over) for deliveries, hand_over in items if hand_over]
        if not offered:
            return [None] * len(items)
        ids = _json.encode([new.id for deliveries, _ in offered for new in deliveries]).decode()
        heads = {row[0]: row[1:] for row in _rows(conn, _QUERIES["new_heads"], {"ids": ids})}
        handed = iter(
            _hand_over(
                conn,
                [
                    ([heads[new.id] for new in deliveries if new.id in heads], hand_over)
                    for deliveries, hand_over in offered
                ],
            )
        )
        return [None if hand_over is None else next(handed) for _, hand_over in items]


_ENQUEUE: Final = _Enqueue()


def _enable_incremental_vacuum(conn: sqlite3.Connection) -> None:
    """Let pruning shrink the file (``PRAGMA incremental_vacuum``), which needs
    ``auto_vacuum = INCREMENTAL``. A file made before it gets it by one VACUUM, which cannot
    run inside a transaction and so is not a numbered migration; it is checked on every open,
    so a VACUUM cut short by a crash (it is atomic) is simply done again."""
    incremental = 2
    if _rows(conn, _QUERIES["auto_vacuum"])[0][0] == incremental:
        return
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    if pages > 1:
        log.info("sqlite file rewritten for incremental vacuum, once", pages=pages)
    conn.executescript(_QUERIES["enable_incremental_vacuum"])


class SQLiteStore:
    """The :class:`~.base.Store` on one SQLite file (``sqlite:///path/to/file.db``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._writer: GroupCommitWriter | None = None
        self._reader: concurrent.futures.ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._opened = False

    # Life cycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        """Create or migrate the file and start the writer; calling it again does nothing."""
        if self._opened:
            return
        writer = GroupCommitWriter(
            lambda: _open_writer(self.path),
            name="sqlite-writer",
            max_batch=_MAX_OPS_PER_COMMIT,
            # The ingests of one pass of the event loop go to the writer together: it is
            # woken (a GIL hand-over with the busy loop) once per pass, not once per request.
            per_tick=True,
            translate=_translate_any,
        )
        try:
            await asyncio.wrap_future(writer.start())
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from None
        reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
        self._read_conn = await asyncio.wrap_future(reader.submit(_connect, self.path))
        self._writer, self._reader, self._opened = writer, reader, True

    async def close(self) -> None:
        """Commit what is queued, then close both connections; calling it again does nothing."""
        if not self._opened:
            return
        self._opened = False
        writer, reader, read_conn = self._writer, self._reader, self._read_conn
        self._writer = self._reader = self._read_conn = None
        if writer is not None:
            await asyncio.to_thread(writer.close, None)
        if reader is not None:
            if read_conn is not None:
                await asyncio.wrap_future(reader.submit(read_conn.close))
            reader.shutdown(wait=False)

    async def ping(self) -> None:
        if self._writer is None or not self._writer.alive:
            raise StoreUnavailable("the SQLite writer is not running")
        await self._select(_QUERIES["ping"])

    async def _write(self, run: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``run(conn)`` in the writer's next transaction; return after its commit."""
        writer = self._writer
        if writer is None:
            raise StoreUnavailable("the store is not open")
        return await writer.submit(run)

    async def _read(self, run: Callable[[sqlite3.Connection], T]) -> T:
        reader, conn = self._reader, self._read_conn
        if reader is None or conn is None:
            raise StoreUnavailable("the store is not open")

        def call() -> T:
            try:
                return run(conn)
            except sqlite3.Error as exc:
                raise _translate(exc) from None

        return await asyncio.wrap_future(reader.submit(call))

    async def _select(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Every row of a query, read on the reader's connection."""
        return await self._read(lambda conn: _rows(conn, sql, params))

    # Registry ------------------------------------------------------------------------------
    async def add_token(self, token: base.TokenRecord) -> None:
        params = dataclasses.asdict(token)
        await self._write(lambda conn: _run(conn, "insert_token", params))

    async def list_tokens(self, dhan_client_id: str | None = None) -> list[base.TokenRecord]:
        where = "1 = 1" if dhan_client_id is None else "t.dhan_client_id = :dhan_client_id"
        sql = _QUERIES["list_tokens"].format(where=where)
        params = {"dhan_client_id": dhan_client_id}
        rows = await self._select(sql, params)
        return [base.TokenRecord(*row) for row in rows]

    async def ensure_endpoint(self, endpoint: base.EndpointRecord) -> base.EndpointRecord:
        params = endpoint.params()

        def run(conn: sqlite3.Connection) -> base.EndpointRecord:
            _run(conn, "insert_endpoint", params)
            return base.EndpointRecord.from_row(_rows(conn, _QUERIES["get_endpoint_of"], params)[0])

        return await self._write(run)

    async def get_endpoint(self, endpoint_id: str) -> base.EndpointRecord | None:
        rows = await self._select(_QUERIES["get_endpoint"], {"id": endpoint_id})
        return base.EndpointRecord.from_row(rows[0]) if rows else None

    async def list_endpoints(self) -> list[base.EndpointRecord]:
        rows = await self._select(_QUERIES["list_endpoints"])
        return [base.EndpointRecord.from_row(row) for row in rows]

    async def rotate_secret(
        self, endpoint_id: str, secret: str, *, now: float, keep_until: float
    ) -> base.EndpointRecord | None:
        def run(conn: sqlite3.Connection) -> base.EndpointRecord | None:
            rows = _rows(conn, _QUERIES["get_endpoint"], {"id": endpoint_id})
            if not rows:
                return None
            rotated = base.EndpointRecord.from_row(rows[0]).rotated(
                secret, now=now, keep_until=keep_until
            )
            _run(conn, "rotate_secret", rotated.params())
            return rotated

        return await self._write(run)

    async def set_paused(self, endpoint_id: str, paused: bool) -> base.PauseChange | None:
        params = {"id": endpoint_id, "paused": int(paused)}

        def run(conn: sqlite3.Connection) -> base.PauseChange | None:
            changed = _run(conn, "set_paused", params) > 0
            rows = _rows(conn, _QUERIES["get_endpoint"], {"id": endpoint_id})
            if not rows:
                return None
            return base.PauseChange(base.EndpointRecord.from_row(rows[0]), changed)

        return await self._write(run)

    async def endpoint_activity(self, endpoint: base.EndpointRecord) -> base.EndpointActivity:
        params = endpoint.params()

        def run(conn: sqlite3.Connection) -> base.EndpointActivity:
            [(backlog,)] = _rows(conn, _QUERIES["endpoint_backlog"], params)
            last = _rows(conn, _LAST_ATTEMPT[endpoint.kind], params)
            return base.EndpointActivity(backlog, base.Attempt(*last[0]) if last else None)

        return await self._read(run)

    async def get_token(self, token_hash: str) -> base.TokenRecord | None:
        rows = await self._select(_QUERIES["get_token"], {"token_hash": token_hash})
        return base.TokenRecord(*rows[0]) if rows else None

    async def revoke_token(self, token_hash: str, at: float) -> bool:
        params = {"token_hash": token_hash, "at": at}
        count = await self._write(lambda conn: _run(conn, "revoke_token", params))
        return count > 0

    async def revoked_since(self, since: float) -> list[str]:
        rows = await self._select(_QUERIES["revoked_since"], {"since": since})
        return [row[0] for row in rows]

    async def put_partner(self, partner: base.PartnerRecord) -> None:
        params = dataclasses.asdict(partner)
        await self._write(lambda conn: _run(conn, "put_partner", params))

    async def get_partner(self, partner_id: str) -> base.PartnerRecord | None:
        rows = await self._select(_QUERIES["get_partner"], {"partner_id": partner_id})
        return base.PartnerRecord(*rows[0]) if rows else None

    # Dashboard sessions --------------------------------------------------------------------
    async def add_session(self, session: base.SessionRecord, *, keep: int, now: float) -> None:
        params = dataclasses.asdict(session)

        def run(conn: sqlite3.Connection) -> None:
            _run(conn, "insert_session", params)
            _run(conn, "evict_sessions", {"principal": session.principal, "keep": keep})
            _run(conn, "expire_sessions", {"now": now})

        await self._write(run)

    async def get_session(self, id_hash: str, *, now: float) -> base.SessionRecord | None:
        rows = await self._select(_QUERIES["get_session"], {"id_hash": id_hash, "now": now})
        return base.SessionRecord(*rows[0]) if rows else None

    async def end_session(self, id_hash: str) -> None:
        await self._write(lambda conn: _run(conn, "end_session", {"id_hash": id_hash}))

    async def set_session_flash(self, id_hash: str, flash: str) -> None:
        params = {"id_hash": id_hash, "flash": flash}
        await self._write(lambda conn: _run(conn, "set_session_flash", params))

    # Outbox --------------------------------------------------------------------------------
    def enqueue(
        self, deliveries: Sequence[base.NewDelivery], *, hand_over: base.HandOver | None = None
    ) -> asyncio.Future[list[base.Claim] | None]:
        # The writer's own future, not a coroutine around it: one object less per ingest,
        # and the dispatcher's hand-over can watch it with a callback (Dispatcher.enqueue).
        if not deliveries:
            nothing: asyncio.Future[list[base.Claim] | None]
            nothing = asyncio.get_running_loop().create_future()
            nothing.set_result(None if hand_over is None else [])
            return nothing
        writer = self._writer
        if writer is None:
            raise StoreUnavailable("the store is not open")
        return writer.submit_item(_ENQUEUE, (deliveries, hand_over))

    async def enqueue_once(
        self,
        deliveries: Sequence[base.NewDelivery],
        record: base.IdempotencyRecord,
        *,
        fresh_after: float,
    ) -> base.IdempotencyRecord | None:
        lookup: dict[str, Any] = {
            "dhan_client_id": record.dhan_client_id,
            "key": record.key,
            "fresh_after": fresh_after,
        }
        stored = dataclasses.asdict(record)

        def run(conn: sqlite3.Connection) -> base.IdempotencyRecord | None:
            earlier = _rows(conn, _QUERIES["get_idempotency_key"], lookup)
            if earlier:
                return base.IdempotencyRecord.from_row(earlier[0])
            if deliveries:
                _insert_deliveries(conn, deliveries)
            _run(conn, "put_idempotency_key", stored)
            return None

        # One writer runs one operation at a time: the look-up and the insert cannot interleave
        # with another request's.
        return await self._write(run)

    async def claim(
        self, *, limit: int, now: float, lease: float, skip_urls: Collection[str] = ()
    ) -> list[base.Claim]:
        if limit <= 0:
            return []
        lease_until = now + lease
        params = {"now": now, "limit": limit, "lease_until": lease_until}
        skipped = frozenset(skip_urls)

        def run(conn: sqlite3.Connection) -> list[base.Claim]:
            skip, mixed = skipped, frozenset[str]()
            paused = _rows(conn, _QUERIES["paused_urls"])
            if paused:
                skip = skip | {url for url, every in paused if every}
                mixed = frozenset(url for url, every in paused if not every)
            if skip or mixed:
                rows = _due_heads_skipping(conn, params, skip, mixed)
            else:
                rows = _rows(conn, _QUERIES["select_due_heads"], params)
            if rows:
                seqs = _json.encode([row[1] for row in rows]).decode()
                _run(conn, "lease", {"lease_until": lease_until, "seqs": seqs})
            return [base.Claim.from_row(row, now=now) for row in rows]

        return await self._write(run)

    async def finish(
        self,
        outcomes: Sequence[base.Outcome],
        *,
        hand_over: base.HandOver | None = None,
        held: base.Held | None = None,
    ) -> list[base.Claim] | None:
        if not outcomes:
            return None if hand_over is None else []
        return await self._write(lambda conn: _finish(conn, outcomes, hand_over, held))

    async def release(self, delivery_ids: Sequence[str], *, held: base.Held | None = None) -> None:
        if not delivery_ids:
            return
        if held is None:
            ids = [{"id": delivery_id} for delivery_id in delivery_ids]
            await self._write(lambda conn: _run_many(conn, "release", ids))
            return
        released = await self.renew(held.of(delivery_ids), until=0.0)  # ended now: released
        held.applied(delivery_ids, set(released))

    async def renew(self, leases: Sequence[tuple[str, float]], *, until: float) -> list[str]:
        if not leases:
            return []
        params = {"leases": _json.encode(leases).decode(), "until": until}
        rows = await self._write(lambda conn: _rows(conn, _QUERIES["renew_leases"], params))
        return [delivery_id for (delivery_id,) in rows]

    async def next_due(self) -> float | None:
        def run(conn: sqlite3.Connection) -> float | None:
            times = [
                row[0]
                for name in ("next_due_head", "next_lease_end")
                for row in _rows(conn, _QUERIES[name])
            ]
            return min(times, default=None)

        return await self._read(run)

    async def replay(self, query: base.DeliveryQuery, *, now: float) -> list[str]:
        where, params = _where(query, paging=False)
        sql = _QUERIES["replay"].format(where=where)
        params["now"] = now

        def run(conn: sqlite3.Connection) -> list[str]:
            rows = _rows(conn, sql, params)
            queues = {(url, order_id) for _, _, url, order_id in rows}
            _run_many(
                conn,
                "refresh_queue_head",
                [{"url": url, "order_id": order_id} for url, order_id in queues],
            )
            rows.sort(key=lambda row: row[0], reverse=query.newest_first)
            return [row[1] for row in rows]

        return await self._write(run)

    # Delivery log --------------------------------------------------------------------------
    async def get_delivery(self, delivery_id: str) -> base.Delivery | None:
        rows = await self._select(_QUERIES["get_delivery"], {"id": delivery_id})
        return base.Delivery.from_row(rows[0]) if rows else None

    async def get_attempts(self, delivery_id: str) -> list[base.Attempt]:
        rows = await self._select(_QUERIES["get_attempts"], {"delivery_id": delivery_id})
        return [base.Attempt(*row) for row in rows]

    async def list_deliveries(self, query: base.DeliveryQuery) -> list[base.Delivery]:
        if query.limit <= 0:
            return []
        where, params = _where(query, paging=True)
        sql = _QUERIES["list_deliveries"].format(
            where=where, direction="DESC" if query.newest_first else "ASC"
        )
        params["limit"] = query.limit
        rows = await self._select(sql, params)
        return [base.Delivery.from_row(row) for row in rows]

    async def oldest_pending(self) -> dict[str, float]:
        rows = await self._select(_QUERIES["oldest_pending"])
        return {url: created_at for url, created_at in rows}

    async def counts(self) -> dict[base.DeliveryStatus, int]:
        rows = await self._select(_QUERIES["counts"])
        counts = dict.fromkeys(base.DeliveryStatus, 0)
        for status, count in rows:
            counts[base.DeliveryStatus(status)] = count
        return counts

    # Retention -----------------------------------------------------------------------------
    async def prune(
        self, *, delivered_before: float, dead_before: float, keys_before: float, limit: int
    ) -> base.PruneResult:
        """One batch in one writer transaction, then the pages it freed go back to the file
        system (incremental vacuum), so the file shrinks as it is pruned."""

        def run(conn: sqlite3.Connection) -> base.PruneResult:
            finished = {"delivered_before": delivered_before, "dead_before": dead_before}
            gone = _rows(conn, _QUERIES["prune_finished"], {**finished, "limit": limit})
            ids = [delivery_id for delivery_id, _ in gone]
            delivered = sum(status == base.DeliveryStatus.DELIVERED for _, status in gone)
            attempts = _run(conn, "prune_attempts", {"ids": _json.encode(ids).decode()})
            keys = _run(conn, "prune_idempotency_keys", {"before": keys_before, "limit": limit})
            if ids or keys:
                (free,) = _rows(conn, _QUERIES["freelist_count"])[0]
                pages = min(free, _VACUUM_PAGES_PER_BATCH)
                _run_many(conn, "incremental_vacuum", itertools.repeat({}, pages))
            return base.PruneResult(delivered, len(ids) - delivered, attempts, keys)

        return await self._write(run)

    # The operator's view (dashboard) --------------------------------------------------------
    async def endpoint_minutes(
        self, endpoint: base.EndpointRecord, *, since: float, until: float
    ) -> list[base.MinuteCounts]:
        params = {**endpoint.params(), "since": since, "until": until}
        rows = await self._select(_QUERIES["endpoint_minutes"], params)
        return [
            base.MinuteCounts(float(minute), delivered, failed)
            for minute, delivered, failed in rows
        ]

    async def endpoint_failures(
        self, endpoint: base.EndpointRecord, *, since: float, limit: int
    ) -> list[base.Attempt]:
        params = {**endpoint.params(), "since": since, "limit": limit}
        rows = await self._select(_QUERIES["endpoint_failures"], params)
        return [base.Attempt(*row) for row in rows]

    async def recent_orders(self, query: base.OrderQuery) -> list[base.OrderSummary]:
        params = query.params()
        rows = await self._select(_QUERIES["recent_orders"], params)
        return [base.OrderSummary.from_row(row) for row in rows]


def _rows(conn: sqlite3.Connection, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
    """Every row of a query, with its cursor closed (see :func:`_run`)."""
    cursor = conn.execute(sql, params or {})
    rows = cursor.fetchall()
    cursor.close()
    return rows


def _run(conn: sqlite3.Connection, name: str, params: Mapping[str, Any]) -> int:
    """Execute a named statement; the number of rows it changed.

    Operations hand back plain values, never a cursor: a cursor dropped later on the event
    loop's thread would reset its statement while the writer thread reuses it.
    """
    cursor = conn.execute(_QUERIES[name], params)
    count = cursor.rowcount
    cursor.close()
    return count


def _run_many(conn: sqlite3.Connection, name: str, rows: Iterable[Mapping[str, Any]]) -> None:
    conn.executemany(_QUERIES[name], rows).close()


_json = msgspec.json.Encoder()


def _insert_deliveries(conn: sqlite3.Connection, deliveries: Sequence[base.NewDelivery]) -> None:
    """Insert deliveries in order with one statement, then their payloads with another (see
    insert_deliveries and insert_payloads in the SQL)."""
    seen: set[tuple[str, str]] = set()
    rows: list[tuple[Any, ...]] = []
    for new in deliveries:
        queue_key = (new.url, new.order_id)
        first = queue_key not in seen
        seen.add(queue_key)
        rows.append(
            (
                new.id,
                new.dhan_client_id,
                new.token_hash,
                new.target.value,
                new.partner_id,
                new.url,
                new.order_id,
                new.payload.decode(),
                new.created_at,
                1 if first else 0,
            )
        )
    params = {"rows": _json.encode(rows).decode()}
    _run(conn, "insert_deliveries", params)
    _run(conn, "insert_payloads", params)


def _due_heads_skipping(
    conn: sqlite3.Connection,
    params: Mapping[str, Any],
    skipped: frozenset[str],
    mixed: frozenset[str] = frozenset(),
) -> list[Row]:
    """``select_due_heads`` without the heads of ``skipped``, at a cost that does not grow
    with how many heads those URLs have (a full lane's or an open breaker's backlog, or a
    paused endpoint's), nor those of the paused endpoints at the URLs in ``mixed``.

    First the oldest due heads of every URL, a bounded number of them: when those hold
    ``limit`` unleased heads of the other URLs (or are all there is), the first ``limit`` of
    those are the claim, as a row filter on the global due index would find them, in one
    statement however many URLs have heads. Otherwise the skipped URLs' heads crowd the
    oldest: each other URL gives its oldest due heads (at most ``limit``, by index), and the
    oldest ``limit`` of those are the claim (a statement per URL with heads, never a read
    through a skipped URL's backlog). So too, at once, when some URL is in ``mixed`` (its
    heads need their endpoints read: two owners at one URL, one paused, a rare case).
    """
    limit = params["limit"]
    if not mixed:
        seqs = _oldest_due_heads_but(conn, params, skipped)
        if seqs is not None:
            return _select_heads(conn, params, seqs)
    candidates: list[tuple[float, int]] = []
    for (url,) in _rows(conn, _QUERIES["select_due_urls"]):
        if url in skipped:
            continue
        query = "select_due_heads_of_url_unpaused" if url in mixed else "select_due_heads_of_url"
        heads = _rows(conn, _QUERIES[query], {**params, "url": url})
        candidates += ((due, seq) for seq, due in heads)
    return _select_heads(conn, params, [seq for _, seq in heapq.nsmallest(limit, candidates)])


def _oldest_due_heads_but(
    conn: sqlite3.Connection, params: Mapping[str, Any], skipped: frozenset[str]
) -> list[int] | None:
    """The seqs of the ``limit`` oldest due, unleased heads of URLs not in ``skipped``, if
    the oldest due heads of every URL (``_SKIPPING_SCAN_FACTOR`` times ``limit`` of them,
    leased or not) tell them; None when they do not (they are all of ``skipped`` or leased,
    and more may follow)."""
    limit, now = params["limit"], params["now"]
    scan = limit * _SKIPPING_SCAN_FACTOR
    heads = _rows(conn, _QUERIES["select_due_head_urls"], {"now": now, "scan": scan})
    seqs = [seq for seq, url, lease_until in heads if url not in skipped and lease_until <= now]
    if len(seqs) >= limit or len(heads) < scan:
        return seqs[:limit]
    return None


def _select_heads(
    conn: sqlite3.Connection, params: Mapping[str, Any], seqs: list[int]
) -> list[Row]:
    """The claim's rows (as ``select_due_heads`` returns them) of the heads ``seqs``."""
    if not seqs:
        return []
    seqs_json = _json.encode(seqs).decode()
    return _rows(conn, _QUERIES["select_heads"], {**params, "seqs": seqs_json})


def _finish(
    conn: sqlite3.Connection,
    outcomes: Sequence[base.Outcome],
    hand_over: base.HandOver | None,
    held: base.Held | None = None,
) -> list[base.Claim] | None:
    """Record each attempt and move its delivery on (delivered, retry or dead); then hand
    over the new heads, if asked.

    A few statements per batch, not per outcome (see the module docstring). An outcome for
    an id already in the batch (not something the dispatcher sends) goes in a later round, so
    that each is applied, in order.
    """
    promoted: list[Row] = []
    rounds = 0
    pending: Sequence[base.Outcome] = outcomes
    while pending:
        rounds += 1
        ids: set[str] = set()
        now: list[base.Outcome] = []
        later: list[base.Outcome] = []
        for outcome in pending:
            if outcome.delivery_id in ids:
                later.append(outcome)
            else:
                ids.add(outcome.delivery_id)
                now.append(outcome)
        promoted += _finish_round(conn, now, held)
        pending = later
    if hand_over is None:
        return None
    if rounds > 1:
        return []  # (a head promoted by one round may have finished in the next: claim them)
    [handed] = _hand_over(conn, [(promoted, hand_over)])
    return handed


def _finish_round(
    conn: sqlite3.Connection, outcomes: Sequence[base.Outcome], held: base.Held | None
) -> list[Row]:
    """:func:`_finish` for outcomes with distinct ids; the heads it promoted, as
    ``promote_queue_heads`` returns them. With ``held``, an outcome whose lease was lost is
    only logged (if its delivery still exists) and listed in ``held.lost``."""
    rows = []
    leases = {} if held is None else held.leases
    for outcome in outcomes:
        attempt = outcome.attempt
        result = outcome.result
        rows.append(
            (
                attempt.delivery_id,
                result,
                attempt.status_code,
                attempt.error,
                (outcome.next_attempt_at or attempt.started_at) if result == "retry" else None,
                attempt.started_at + attempt.latency_ms / 1000 if result == "delivered" else None,
                # -1: a lease nobody holds (a dispatcher that holds none finishes nothing)
                None if held is None else leases.get(attempt.delivery_id, -1.0),
            )
        )
    changed = _rows(conn, _QUERIES["finish_deliveries"], {"rows": _json.encode(rows).decode()})
    found = {row[1]: row for row in changed}
    if held is not None and len(found) < len(outcomes):
        lost = [outcome.attempt for outcome in outcomes if outcome.delivery_id not in found]
        held.lost.extend(attempt.delivery_id for attempt in lost)
        _run(conn, "insert_attempts_if_known", {"rows": _attempt_rows(lost)})
    if not changed:
        return []  # no such deliveries: nothing to record the attempts against
    attempts = []
    left: list[tuple[str, str, int]] = []  # the queues whose head left: (url, order_id, seq)
    dead: list[dict[str, Any]] = []
    for outcome in outcomes:
        attempt = outcome.attempt
        row = found.get(attempt.delivery_id)
        if row is None:
            continue
        attempts.append(attempt)
        if outcome.result != "retry":
            seq, _, url, order_id, was_head = row
            if was_head:
                left.append((url, order_id, seq))
            if outcome.result == "dead":
                dead.append({"seq": seq, "url": url, "order_id": order_id})
    _run(conn, "insert_attempts", {"rows": _attempt_rows(attempts)})
    if dead:
        _run_many(conn, "flag_after_dead", dead)
    if not left:
        return []
    return _rows(conn, _QUERIES["promote_queue_heads"], {"queues": _json.encode(left).decode()})


def _attempt_rows(attempts: Iterable[base.Attempt]) -> str:
    """``attempts`` as the JSON ``:rows`` of ``insert_attempts``."""
    return _json.encode(
        [
            (
                a.delivery_id,
                a.number,
                a.started_at,
                a.latency_ms,
                a.status_code,
                a.error,
                a.response_prefix,
            )
            for a in attempts
        ]
    ).decode()


def _hand_over(
    conn: sqlite3.Connection, offers: Sequence[tuple[Sequence[Row], base.HandOver]]
) -> list[list[base.Claim]]:
    """For each offer, lease what ``claim`` on its hand-over's terms could take of its heads
    (rows of ``seq, url, next_attempt_at, lease_until``), oldest due first, as ``claim``
    leases (same statements, one for all the offers: a lease ends at the earliest of their
    ends, a few milliseconds short for some).

    An endpoint paused at a URL keeps every head of that URL out (the claim, which looks
    closer, takes those of another owner's endpoint there)."""
    picks = [
        [
            (due, seq, url)
            for seq, url, due, lease_until in heads
            if due <= hand_over.now
            and lease_until <= hand_over.now
            and url not in hand_over.skip_urls
        ]
        if hand_over.limit > 0
        else []
        for heads, hand_over in offers
    ]
    if not any(picks):
        return [[] for _ in offers]
    paused = _rows(conn, _QUERIES["paused_urls"])
    if paused:
        shut = {url for url, _ in paused}
        picks = [[pick for pick in some if pick[2] not in shut] for some in picks]
    chosen = [
        [seq for _, seq, _ in heapq.nsmallest(hand_over.limit, some)]
        for some, (_, hand_over) in zip(picks, offers, strict=True)
    ]
    seqs = [seq for some in chosen for seq in some]
    if not seqs:
        return [[] for _ in offers]
    lease_until = min(hand_over.now + hand_over.lease for _, hand_over in offers)
    params = {"seqs": _json.encode(seqs).decode(), "lease_until": lease_until}
    rows = {row[1]: row for row in _rows(conn, _QUERIES["select_heads"], params)}
    _run(conn, "lease", params)
    return [
        [base.Claim.from_row(rows[seq], now=hand_over.now) for seq in some if seq in rows]
        for some, (_, hand_over) in zip(chosen, offers, strict=True)
    ]


def _where(query: base.DeliveryQuery, *, paging: bool) -> tuple[str, dict[str, Any]]:
    """The WHERE clause and parameters of a delivery query's filters (and its cursor)."""
    terms: list[str] = []
    params: dict[str, Any] = {}
    values: dict[str, Any] = {
        "status": str(query.status) if query.status is not None else None,
        "order_id": query.order_id,
        "dhan_client_id": query.dhan_client_id,
        "target": str(query.target) if query.target is not None else None,
        "partner_id": query.partner_id,
        "since": query.since,
        "until": query.until,
        "ids": json.dumps(list(query.ids)) if query.ids is not None else None,
    }
    for name, value in values.items():
        if value is not None:
            terms.append(_FILTERS[name])
            params[name] = value
    if paging and query.cursor is not None:
        terms.append("seq < :cursor" if query.newest_first else "seq > :cursor")
        params["cursor"] = query.cursor
    return (" AND ".join(terms) or "1 = 1"), params
