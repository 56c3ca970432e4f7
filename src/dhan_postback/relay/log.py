"""The relay's own small SQLite log: what came in, what the sink has taken, what was refused.

The broker's websocket has no acknowledgement and no replay, and it may send a frame again
after a reconnect. The log makes the relay safe on both counts:

* every mapped update is written here (durably) before the next frame is read, keyed by its
  *change key*; a frame whose change is already in the log is a duplicate and is skipped,
  also after a restart;
* the log keeps each order's last state, from the websocket or the order book alike, and
  takes an update only if it is newer (:mod:`~.progress`): the same state from the other
  source is a duplicate, an older one is stale and skipped, so nothing moves an order back;
* an update is marked acknowledged only after the sink committed it (the service answered
  202), so updates that were received but not yet handed on are sent after a restart;
* frames that cannot be mapped, and updates the service refuses, are kept as dead letters
  for a person to look at.

The log stays small: only the newest ``keep`` acknowledged updates are remembered, which
bounds both the file and the de-duplication window. One connection, used from one thread:
the relay's volumes (one account's orders) are far below what SQLite does in its sleep, and
its one writer thread (:class:`~dhan_postback._sqlite.GroupCommitWriter`) runs reads too.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import msgspec

from .._sqlite import GroupCommitWriter, migrate
from ..files import create_private
from ..payload import OrderUpdate, dumps
from .progress import OrderState, Verdict, compare
from .queries import load_relay_queries, migrations

__all__ = [
    "ORDER_STATE_DAYS",
    "SCHEMA_VERSION",
    "DeadLetter",
    "LogCounts",
    "LoggedUpdate",
    "Recorded",
    "RelayLog",
    "change_key",
]

_T = TypeVar("_T")

_SQL: Final = load_relay_queries("log")
_MIGRATIONS: Final = migrations(_SQL)

SCHEMA_VERSION: Final = _MIGRATIONS[-1][0]

ORDER_STATE_DAYS: Final = 7
"""How long the last state of an order is kept: the broker's order book and websocket only
speak of the current trading day, so a week covers any restart."""


class Recorded(enum.StrEnum):
    """What :meth:`RelayLog.record` did with one update."""

    NEW = "new"
    """Written: it goes to the sink."""
    DUPLICATE = "duplicate"
    """Already taken: the same change, or the order's last state again."""
    STALE = "stale"
    """Older than the order's last state: it would move the order backwards; skipped."""


def change_key(update: OrderUpdate) -> str:
    """What makes an update a distinct change of its order.

    The same order, time, status and filled quantity is the same update; price, trigger price
    and quantity are included so that two modifications within one second stay distinct.
    """
    parts = (
        update.dhan_client_id,
        update.order_id,
        update.update_time,
        update.order_status.value,
        str(update.filled_qty),
        str(update.quantity),
        repr(update.price),
        repr(update.trigger_price),
        update.leg_name.value if update.leg_name else "",
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class LoggedUpdate:
    """An update waiting for the sink: its log position and its exact postback body."""

    seq: int
    order_id: str
    update_time: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Something the relay could not hand on, and why."""

    id: int
    at: float
    reason: str
    frame: str


@dataclass(frozen=True, slots=True)
class LogCounts:
    pending: int
    acked: int
    refused: int
    dead_letters: int


class RelayLog:
    """The relay's SQLite file (WAL, ``synchronous=FULL``): nothing acknowledged is lost."""

    def __init__(
        self,
        path: str | Path,
        *,
        keep: int = 100_000,
        keep_dead_letters: int = 10_000,
        prune_every: int = 1_000,
    ) -> None:
        self.path = str(path)
        self.keep = keep
        self.keep_dead_letters = keep_dead_letters
        self.prune_every = prune_every
        self._writer = GroupCommitWriter(self._connect, name="relay-log", translate=_as_is)
        self._open = False
        self._acks_since_prune = 0

    async def open(self) -> None:
        await asyncio.wrap_future(self._writer.start())
        self._open = True
        await self._run(self._prune)

    async def close(self) -> None:
        self._open = False
        await asyncio.to_thread(self._writer.close)

    async def __aenter__(self) -> RelayLog:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def record(self, updates: Sequence[OrderUpdate]) -> list[Recorded]:
        """Write the updates that are newer than their order's last state, in one transaction,
        and make each the order's last state; say for each what was done."""
        return await self._run(lambda db: _record(db, updates))

    async def pending(self, limit: int) -> list[LoggedUpdate]:
        """The oldest updates not yet acknowledged, in the order they arrived."""
        rows = await self._run(lambda db: db.execute(_SQL["pending"], (limit,)).fetchall())
        return [
            LoggedUpdate(seq, order_id, when, bytes(body)) for seq, order_id, when, body in rows
        ]

    async def ack(self, seqs: Sequence[int]) -> None:
        """The sink committed these updates."""
        await self._run(lambda db: self._ack(db, seqs))

    async def refuse(self, entry: LoggedUpdate, reason: str) -> None:
        """The sink refused this update for good: close it and keep it as a dead letter."""

        def work(db: sqlite3.Connection) -> None:
            now = time.time()
            db.execute(_SQL["refuse"], (now, entry.seq))
            db.execute(_SQL["insert_dead_letter"], (now, reason, entry.payload.decode()))

        await self._run(work)

    async def dead_letter(self, frame: str | bytes, reason: str) -> None:
        """Keep a frame the relay could not map, with the reason."""
        text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame

        def work(db: sqlite3.Connection) -> None:
            # No cursor leaves the log's thread: dropped elsewhere, it would reset a statement
            # the thread may be running.
            db.execute(_SQL["insert_dead_letter"], (time.time(), reason, text)).close()

        await self._run(work)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters first."""
        rows = await self._run(lambda db: db.execute(_SQL["dead_letters"], (limit,)).fetchall())
        return [DeadLetter(*row) for row in rows]

    async def counts(self) -> LogCounts:
        row = await self._run(lambda db: db.execute(_SQL["counts"]).fetchone())
        return LogCounts(*row)

    # In the log's thread ---------------------------------------------------------------------

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in the writer's next transaction (reads too: one connection serves
        all, which is what lets the log live in memory for tests)."""
        if not self._open:
            raise RuntimeError("the relay log is not open")
        return await self._writer.submit(work)

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            create_private(self.path)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.executescript(_SQL["connection_settings"])
            migrate(db, _MIGRATIONS, too_new=self._too_new, with_data={2: _backfill_order_states})
        except BaseException:
            db.close()
            raise
        return db

    def _too_new(self, found: int, known: int) -> Exception:
        return RuntimeError(f"{self.path} was written by a newer dhan-postback (schema {found})")

    def _ack(self, db: sqlite3.Connection, seqs: Sequence[int]) -> None:
        now = time.time()
        db.executemany(_SQL["ack"], [(now, seq) for seq in seqs])
        self._acks_since_prune += len(seqs)
        if self._acks_since_prune >= self.prune_every:
            self._prune(db)

    def _prune(self, db: sqlite3.Connection) -> None:
        db.execute(_SQL["prune_updates"], (self.keep,))
        db.execute(_SQL["prune_dead_letters"], (self.keep_dead_letters,))
        db.execute(_SQL["prune_order_states"], (time.time() - ORDER_STATE_DAYS * 86400,))
        self._acks_since_prune = 0


def _as_is(exc: Exception) -> BaseException:
    return exc


def _record(db: sqlite3.Connection, updates: Sequence[OrderUpdate]) -> list[Recorded]:
    now = time.time()
    outcomes: list[Recorded] = []
    for update in updates:
        key = change_key(update)
        if db.execute(_SQL["known_change"], (key,)).fetchone() is not None:
            outcomes.append(Recorded.DUPLICATE)
            continue
        verdict = compare(update, _order_state(db, update))
        if verdict is Verdict.SAME:
            outcomes.append(Recorded.DUPLICATE)
            continue
        if verdict is Verdict.OLDER:
            outcomes.append(Recorded.STALE)
            continue
        db.execute(
            _SQL["insert_update"],
            (key, update.order_id, update.update_time, dumps(update), now),
        )
        _put_order_state(db, update, now)
        outcomes.append(Recorded.NEW)
    return outcomes


_decode: Final = msgspec.json.Decoder(OrderUpdate).decode


def _backfill_order_states(db: sqlite3.Connection) -> None:
    """A log from before order states: each order's last state from the updates it kept."""
    now = time.time()
    for (payload,) in db.execute(_SQL["all_payloads"]).fetchall():
        update = _decode(bytes(payload))
        if compare(update, _order_state(db, update)) is Verdict.NEWER:
            _put_order_state(db, update, now)


def _order_state(db: sqlite3.Connection, update: OrderUpdate) -> OrderState | None:
    row = db.execute(
        _SQL["order_state"],
        (update.dhan_client_id, update.order_id, update.leg_name or ""),
    ).fetchone()
    return None if row is None else OrderState(*row)


def _put_order_state(db: sqlite3.Connection, update: OrderUpdate, now: float) -> None:
    state = OrderState.of(update)
    db.execute(
        _SQL["put_order_state"],
        (
            update.dhan_client_id,
            update.order_id,
            update.leg_name or "",
            state.update_time,
            state.status,
            state.filled_qty,
            state.quantity,
            state.price,
            state.trigger_price,
            now,
        ),
    )
