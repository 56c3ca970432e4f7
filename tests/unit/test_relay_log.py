"""The relay's SQLite log: de-duplication, acknowledgement, dead letters, bounded size."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dhan_postback.payload import OrderStatus, dumps
from dhan_postback.relay.log import Recorded, RelayLog, change_key
from dhan_postback.relay.queries import load_relay_queries
from tests.helpers.updates import simulated_updates

UPDATES = simulated_updates(6)
NEW, DUP, STALE = Recorded.NEW, Recorded.DUPLICATE, Recorded.STALE


async def test_a_new_update_is_recorded_and_its_duplicate_is_not(tmp_path: Path) -> None:
    async with RelayLog(tmp_path / "relay.db") as log:
        assert await log.record(UPDATES[:3]) == [NEW, NEW, NEW]
        assert await log.record([UPDATES[1], UPDATES[3], UPDATES[3]]) == [DUP, NEW, DUP]
        assert (await log.counts()).pending == 4


async def test_pending_updates_come_back_in_arrival_order_with_their_exact_body(
    tmp_path: Path,
) -> None:
    async with RelayLog(tmp_path / "relay.db") as log:
        await log.record(UPDATES[:5])
        pending = await log.pending(limit=3)
    assert [entry.payload for entry in pending] == [dumps(u) for u in UPDATES[:3]]
    assert [entry.seq for entry in pending] == sorted(entry.seq for entry in pending)


async def test_acknowledged_updates_are_no_longer_pending_but_still_deduplicated(
    tmp_path: Path,
) -> None:
    async with RelayLog(tmp_path / "relay.db") as log:
        await log.record(UPDATES[:2])
        await log.ack([entry.seq for entry in await log.pending(limit=10)])
        assert await log.pending(limit=10) == []
        assert await log.record(UPDATES[:2]) == [DUP, DUP]


async def test_the_log_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    async with RelayLog(path) as log:
        await log.record(UPDATES[:3])
        first = (await log.pending(limit=1))[0]
        await log.ack([first.seq])
    async with RelayLog(path) as log:
        assert await log.record(UPDATES[:3]) == [DUP, DUP, DUP]
        assert [e.payload for e in await log.pending(limit=10)] == [dumps(u) for u in UPDATES[1:3]]


async def test_a_change_of_status_fill_or_price_is_a_new_update() -> None:
    update = UPDATES[0]
    keys = {
        change_key(update),
        change_key(update.replace(order_status=OrderStatus.CANCELLED)),
        change_key(update.replace(filled_qty=update.quantity)),
        change_key(update.replace(price=update.price + 1)),
        change_key(update.replace(quantity=update.quantity + 1)),
        change_key(update.replace(update_time="2030-01-01 00:00:00")),
    }
    assert len(keys) == 6
    assert change_key(update) == change_key(update.replace(trading_symbol="OTHER"))


async def test_a_refused_update_becomes_a_dead_letter(tmp_path: Path) -> None:
    async with RelayLog(tmp_path / "relay.db") as log:
        await log.record(UPDATES[:1])
        (entry,) = await log.pending(limit=1)
        await log.refuse(entry, "HTTP 400: bad")
        assert await log.pending(limit=1) == []
        (letter,) = await log.dead_letters()
        counts = await log.counts()
    assert letter.reason == "HTTP 400: bad" and letter.frame == entry.payload.decode()
    assert (counts.refused, counts.dead_letters, counts.acked) == (1, 1, 0)


async def test_unmappable_frames_are_kept_with_their_reason(tmp_path: Path) -> None:
    async with RelayLog(tmp_path / "relay.db") as log:
        await log.dead_letter(b"garbage \xff", "not JSON")
        await log.dead_letter("second", "no Data")
        letters = await log.dead_letters()
    assert [(d.frame, d.reason) for d in letters] == [
        ("second", "no Data"),
        ("garbage \ufffd", "not JSON"),
    ]


async def test_only_the_newest_acknowledged_updates_are_kept(tmp_path: Path) -> None:
    updates = simulated_updates(40)
    async with RelayLog(tmp_path / "relay.db", keep=10, prune_every=5) as log:
        await log.record(updates)
        await log.ack([entry.seq for entry in await log.pending(limit=1000)])
        counts = await log.counts()
        assert counts.acked == 10
        assert NEW not in await log.record(updates[-10:])


async def test_an_update_older_than_the_orders_last_state_is_stale(tmp_path: Path) -> None:
    first, second = UPDATES[0], UPDATES[1]  # one order: TRANSIT, then PENDING
    async with RelayLog(tmp_path / "relay.db") as log:
        assert await log.record([second]) == [NEW]
        assert await log.record([first]) == [STALE]
        assert [e.payload for e in await log.pending(limit=10)] == [dumps(second)]


async def test_the_same_state_in_another_body_is_a_duplicate(tmp_path: Path) -> None:
    """A book row carries values a frame does not (BO values, error code): same change."""
    update = UPDATES[2]
    from_the_book = update.replace(bo_profit_value=12.5, oms_error_code="OMS-1")
    async with RelayLog(tmp_path / "relay.db") as log:
        assert await log.record([update, from_the_book]) == [NEW, DUP]


async def test_order_states_outlive_the_pruned_updates(tmp_path: Path) -> None:
    async with RelayLog(tmp_path / "relay.db", keep=0, prune_every=1) as log:
        await log.record(UPDATES[:2])
        await log.ack([entry.seq for entry in await log.pending(limit=10)])
        assert (await log.counts()).acked == 0
        assert await log.record(UPDATES[:2]) == [STALE, DUP]


async def test_a_log_of_the_first_schema_gets_its_orders_last_states(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    db = sqlite3.connect(path)
    db.executescript(load_relay_queries("log")["migration_1"] + "; PRAGMA user_version = 1;")
    db.executemany(
        "INSERT INTO updates (change_key, order_id, update_time, payload, received_at) "
        "VALUES (?, ?, ?, ?, 0)",
        [(change_key(u), u.order_id, u.update_time, dumps(u)) for u in UPDATES[:3]],
    )
    db.commit()
    db.close()
    async with RelayLog(path) as log:
        older = UPDATES[0].replace(update_time="2025-01-15 09:20:00", price=1.0)
        assert await log.record([older]) == [STALE]
        assert await log.record([UPDATES[3]]) == [NEW]
