"""What only the SQLite store promises: its file, its schema version, its durability settings."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import sqlite3
from pathlib import Path

import pytest

from dhan_postback.errors import StoreUnavailable
from dhan_postback.service.registry import register_token
from dhan_postback.service.store import Attempt, NewDelivery, Outcome, Target, TokenRecord
from dhan_postback.service.store.queries import load_queries, migrations
from dhan_postback.service.store.sqlite import SQLiteStore, sqlite_path


def test_sqlite_urls_name_relative_and_absolute_files() -> None:
    assert sqlite_path("sqlite:///./dhan-postback.db") == "./dhan-postback.db"
    assert sqlite_path("sqlite:///data/outbox.db") == "data/outbox.db"
    assert sqlite_path("sqlite:////var/lib/outbox.db") == "/var/lib/outbox.db"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:", "memory://"])
def test_sqlite_urls_without_a_file_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        sqlite_path(url)


async def test_a_new_file_is_created_in_wal_mode_at_the_current_schema(tmp_path: Path) -> None:
    current = migrations(load_queries("sqlite"))[-1][0]
    path = tmp_path / "sub" / "outbox.db"
    store = SQLiteStore(f"sqlite:///{path}")
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (current,)


async def test_a_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreUnavailable, match="newer"):
        await SQLiteStore(f"sqlite:///{path}").open()


async def test_open_and_close_twice_are_harmless(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'outbox.db'}")
    await store.open()
    await store.open()
    await store.ping()
    await store.close()
    await store.close()


async def test_a_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'outbox.db'}")
    await store.open()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.counts()
    with pytest.raises(StoreUnavailable):
        await store.revoke_token("0" * 64, 0.0)


async def test_a_payload_that_is_not_utf8_fails_alone(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'outbox.db'}")
    await store.open()
    try:
        good = NewDelivery("msg_good", "c", "h", Target.TOKEN, None, "u", "o1", b"{}", 1.0)
        bad = dataclasses.replace(good, id="msg_bad", order_id="o2", payload=b"\xff")
        results = await asyncio.gather(
            store.enqueue([good]), store.enqueue([bad]), return_exceptions=True
        )
        assert results[0] is None
        assert isinstance(results[1], UnicodeDecodeError)
        assert await store.get_delivery("msg_good") is not None
        await store.ping()  # the writer is still serving
    finally:
        await store.close()


_OUTBOX_STATEMENTS = (
    "insert_deliveries",
    "select_due_heads",
    "select_due_head_urls",
    "select_due_urls",
    "select_due_heads_of_url",
    "select_heads",
    "lease",
    "release",
    "renew_leases",
    "finish_deliveries",
    "insert_payloads",
    "insert_attempts",
    "promote_queue_heads",
    "new_heads",
    "flag_after_dead",
    "refresh_queue_head",
    "next_due_head",
    "next_lease_end",
    "get_idempotency_key",
    "put_idempotency_key",
    "prune_finished",
    "prune_attempts",
    "prune_idempotency_keys",
    "endpoint_backlog",
)


@pytest.mark.parametrize("name", _OUTBOX_STATEMENTS)
async def test_outbox_statements_never_scan_a_whole_table(tmp_path: Path, name: str) -> None:
    """The delivery path stays proportional to its batch, however many rows are stored.

    (A correlated subquery in a RETURNING clause, for one, is run as a scan by SQLite 3.40.)
    """
    store = SQLiteStore(f"sqlite:///{tmp_path}/plan.db")
    await store.open()
    await store.close()
    sql = load_queries("sqlite")[name]
    params = dict.fromkeys(re.findall(r":(\w+)", sql), "[]")
    conn = sqlite3.connect(tmp_path / "plan.db")
    try:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    finally:
        conn.close()
    tables = ("deliveries", "attempts", "tokens", "partners", "idempotency_keys")
    tables += ("t", "p", "d", "q", "h")
    whole_table_scans = [step for step in plan if step in {f"SCAN {name}" for name in tables}]
    # A search by status alone reads every pending row: the whole backlog, not the batch
    # (the heartbeat's renewal once did, 0.9 s for 400 leases over 20,000 pending).
    whole_table_scans += [step for step in plan if step.endswith("deliveries_status (status=?)")]
    assert whole_table_scans == []


# Schema upgrades -----------------------------------------------------------------------------


def _migrate_to(conn: sqlite3.Connection, version: int) -> None:
    """Bring a new file to schema ``version``, as a dhan-postback of that version would have."""
    for number, script in migrations(load_queries("sqlite"))[:version]:
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")


async def test_a_queue_from_before_migration_10_goes_on_in_order_after_the_upgrade(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    updates = [("o1", 1), ("o2", 1), ("o1", 2), ("o1", 3), ("o2", 2)]
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        _migrate_to(conn, 9)
        for seq, (order_id, update) in enumerate(updates, start=1):
            conn.execute(
                "INSERT INTO deliveries (seq, id, dhan_client_id, token_hash, target, url, "
                "order_id, created_at, next_attempt_at, is_head) VALUES (?, ?, 'c', 'h', "
                "'token', 'u', ?, 1.0, 1.0, ?)",
                (seq, f"msg_{order_id}_{update}", order_id, int(update == 1)),
            )
            conn.execute("INSERT INTO delivery_payloads VALUES (?, CAST('{}' AS BLOB))", (seq,))
    store = SQLiteStore(f"sqlite:///{path}")
    await store.open()
    try:
        await register_token(store, TokenRecord("h", "c", "u", None, 1.0, 9e9), "whsec_c2VjcmV0")
        rounds = []
        while claims := await store.claim(limit=10, now=2.0, lease=30.0):
            rounds.append([claim.id for claim in claims])
            await store.finish(
                [Outcome(Attempt(claim.id, 1, 2.0, 1.0, 200), "delivered") for claim in claims]
            )
    finally:
        await store.close()
    assert rounds == [["msg_o1_1", "msg_o2_1"], ["msg_o1_2", "msg_o2_2"], ["msg_o1_3"]]


# Retention: the file shrinks -------------------------------------------------------------------


def _file_pages(path: Path) -> tuple[int, int, int]:
    """(auto_vacuum, page_count, freelist_count) of a SQLite file, after a checkpoint."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return tuple(  # type: ignore[return-value]
            conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("auto_vacuum", "page_count", "freelist_count")
        )


async def test_a_new_file_uses_incremental_vacuum(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'outbox.db'}")
    await store.open()
    await store.close()
    assert _file_pages(tmp_path / "outbox.db")[0] == 2  # INCREMENTAL


async def test_a_file_from_before_retention_is_migrated_to_incremental_vacuum(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    queries = load_queries("sqlite")
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        _migrate_to(conn, 8)  # its row has its payload inline, as before migration 9
        conn.execute(
            "INSERT INTO deliveries (id, dhan_client_id, token_hash, target, url, order_id, "
            "payload, created_at, next_attempt_at) VALUES ('msg_old', 'c', 'h', 'token', 'u', "
            "'o', CAST('{}' AS BLOB), 1.0, 1.0)"
        )
    assert _file_pages(path)[0] == 0
    store = SQLiteStore(f"sqlite:///{path}")
    await store.open()
    try:
        assert await store.get_delivery("msg_old") is not None
    finally:
        await store.close()
    assert _file_pages(path)[0] == 2
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(migrations(queries)),)


async def test_pruning_shrinks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    store = SQLiteStore(f"sqlite:///{path}")
    await store.open()
    try:
        await register_token(store, TokenRecord("h", "c", "u", None, 1.0, 9e9), "whsec_c2VjcmV0")
        body = b'{"pad":"' + b"x" * 2000 + b'"}'
        for batch in range(10):
            await store.enqueue(
                [
                    NewDelivery(f"msg_{batch}_{i}", "c", "h", Target.TOKEN, None, "u", f"o{i}",
                                body, 1.0)
                    for i in range(200)
                ]
            )  # fmt: skip
            claims = await store.claim(limit=1000, now=2.0, lease=30.0)
            await store.finish(
                [Outcome(Attempt(claim.id, 1, 2.0, 1.0, 200), "delivered") for claim in claims]
            )
        _, full, _ = _file_pages(path)
        while (
            await store.prune(delivered_before=10.0, dead_before=10.0, keys_before=0.0, limit=500)
        ).delivered:
            pass
    finally:
        await store.close()
    _, pruned, free = _file_pages(path)
    assert full > 1000  # 2,000 deliveries of 2 kB each
    assert pruned < full / 10
    assert free == 0
