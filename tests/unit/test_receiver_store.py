from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dhan_postback.errors import StoreUnavailable
from dhan_postback.receiver import ReceiverStore, parse_and_verify
from dhan_postback.receiver.store import Recorded
from tests.helpers.updates import update_body


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReceiverStore]:
    opened = ReceiverStore(tmp_path / "receiver.db")
    opened.start()
    yield opened
    opened.close()


def record(store: ReceiverStore, body: bytes, webhook_id: str | None = None) -> Recorded:
    headers = {"webhook-id": webhook_id} if webhook_id else {}
    postback = parse_and_verify(headers, body)
    return store.record_sync(postback)


def test_a_recorded_update_gets_a_sequence_number_and_a_book_row(store: ReceiverStore) -> None:
    result = record(store, update_body("1", "PENDING"))
    assert result.seq == 1 and result.applied and not result.duplicate
    row = store.order("1")
    assert row is not None
    assert (row.status, row.filled_qty, row.quantity, row.last_seq) == ("PENDING", 0, 10, 1)
    assert row.update.fields["orderId"] == "1"


def test_the_same_webhook_id_is_recorded_once(store: ReceiverStore) -> None:
    record(store, update_body("1", "PENDING"), "msg_1")
    assert record(store, update_body("1", "PENDING"), "msg_1").duplicate
    assert store.counts().updates == 1


def test_the_same_body_without_an_id_is_recorded_once(store: ReceiverStore) -> None:
    body = update_body("1", "PENDING")
    record(store, body)
    assert record(store, body).duplicate


def test_an_older_update_is_kept_in_history_but_does_not_move_the_book(
    store: ReceiverStore,
) -> None:
    record(store, update_body("1", "TRADED", "2024-01-02 10:00:05", 10))
    late = record(store, update_body("1", "PENDING", "2024-01-02 10:00:01"))
    assert late.seq == 2 and not late.applied
    row = store.order("1")
    assert row is not None and row.status == "TRADED" and row.last_seq == 1
    assert row.update_count == 2
    assert [(u.seq, u.status, u.applied) for u in store.history("1")] == [
        (1, "TRADED", True),
        (2, "PENDING", False),
    ]


def test_bracket_order_legs_are_separate_rows_of_one_order(store: ReceiverStore) -> None:
    record(store, update_body("7", "TRADED", filled_qty=10, leg_name="ENTRY_LEG"))
    record(store, update_body("7", "PENDING", "2024-01-02 10:00:09", leg_name="TARGET_LEG"))
    legs = {row.leg_name: row.status for row in store.orders(order_id="7")}
    assert legs == {"ENTRY_LEG": "TRADED", "TARGET_LEG": "PENDING"}
    entry = store.order("7")
    assert entry is not None and entry.leg_name == "ENTRY_LEG"
    target = store.order("7", "TARGET_LEG")
    assert target is not None and target.status == "PENDING"


def test_orders_can_be_listed_by_status_and_by_client(store: ReceiverStore) -> None:
    record(store, update_body("1", "PENDING", client_id="A"))
    record(store, update_body("2", "TRADED", filled_qty=10, client_id="A"))
    record(store, update_body("3", "TRADED", filled_qty=10, client_id="B"))
    assert [r.order_id for r in store.orders(status="TRADED")] == ["3", "2"]
    assert [r.order_id for r in store.orders(client_id="A")] == ["2", "1"]
    assert [r.order_id for r in store.orders(status="TRADED", client_id="A")] == ["2"]
    assert store.counts().orders_by_status == {"PENDING": 1, "TRADED": 2}


def test_an_unknown_status_is_stored_as_it_came(store: ReceiverStore) -> None:
    record(store, update_body("1", "TRIGGERED"))
    row = store.order("1")
    assert row is not None and row.status == "TRIGGERED"
    assert row.update.unknown_values == ("orderStatus=TRIGGERED",)
    (stored,) = store.history("1")
    assert stored.unknown_values == ("orderStatus=TRIGGERED",)
    assert (stored.status, stored.filled_qty) == ("TRIGGERED", 0)


async def test_quarantine_keeps_the_reason_headers_and_the_start_of_the_body(
    store: ReceiverStore,
) -> None:
    await store.quarantine("not json", {"user-agent": "x"}, b"y" * 10_000, now=1.0)
    (entry,) = store.quarantined()
    assert (entry.reason, entry.headers, entry.body_size) == (
        "not json",
        {"user-agent": "x"},
        10_000,
    )
    assert entry.body_prefix == b"y" * 4096


async def test_handler_failures_are_recorded_then_cleared_by_a_successful_retry(
    store: ReceiverStore,
) -> None:
    seq = record(store, update_body("1")).seq
    assert seq is not None
    await store.handled(seq, [("h", "boom")], now=1.0, next_at=2.0)
    (failure,) = store.handler_failures(due_by=2.0)
    assert (failure.attempts, failure.last_error, failure.dead) == (1, "boom", False)
    assert store.handler_failures(due_by=1.5) == []
    await store.retried(seq, "h", None, now=3.0, next_at=None)
    assert store.handler_failures() == []


def test_data_survives_closing_and_reopening(tmp_path: Path) -> None:
    first = ReceiverStore(tmp_path / "r.db")
    first.start()
    record(first, update_body("1", "PENDING"))
    first.close()
    again = ReceiverStore(tmp_path / "r.db")
    assert again.order("1") is not None
    again.close()


def test_the_store_refuses_an_in_memory_database() -> None:
    with pytest.raises(ValueError, match="file"):
        ReceiverStore(":memory:")


def test_writing_to_a_closed_store_is_store_unavailable(tmp_path: Path) -> None:
    closed = ReceiverStore(tmp_path / "r.db")
    closed.start()
    closed.close()
    with pytest.raises(StoreUnavailable):
        record(closed, update_body("1"))


def test_one_large_batch_dedupes_and_orders_updates_like_single_writes(tmp_path: Path) -> None:
    batched = ReceiverStore(tmp_path / "batched.db")  # not started: everything queues
    bodies = [
        update_body(f"B{n % 300}", status, f"2024-01-02 10:00:0{step}", filled)
        for n in range(300)
        for step, status, filled in ((2, "TRADED", 10), (1, "PENDING", 0))  # newest first
    ]
    bodies += bodies[:50]  # repeats, inside the same batch
    futures = [batched.record_soon(parse_and_verify({}, body)) for body in bodies]
    batched.start()
    results = [future.result(30) for future in futures]
    assert sum(r.duplicate for r in results) == 50
    assert [r.applied for r in results[:4]] == [True, False, True, False]
    assert batched.counts().updates == 600
    assert batched.counts().orders_by_status == {"TRADED": 300}
    row = batched.order("B7")
    assert row is not None and row.update_count == 2 and row.status == "TRADED"
    batched.close()


def test_the_writer_keeps_a_batch_savepoint_journal_in_memory(store: ReceiverStore) -> None:
    # Past 64 KiB the journal would spill to a temporary file, opened and unlinked per commit.
    memory = 2  # SQLite's temp_store value for MEMORY
    temp_store = store._writer.run(lambda conn: conn.execute("PRAGMA temp_store").fetchone()[0])
    assert temp_store == memory
