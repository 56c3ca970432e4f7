"""The SQLite foundation every store writes through: the group-commit writer and the
migration runner (named SQL is covered by test_queries)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from dhan_postback._sqlite import BatchOp, GroupCommitWriter, migrate
from dhan_postback.errors import StoreUnavailable, UnstorablePayload


@pytest.fixture
def table(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "w.db"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (v INTEGER UNIQUE)")
    setup.commit()
    setup.close()
    yield path


def values(path: Path) -> list[int]:
    check = sqlite3.connect(path)
    try:
        return sorted(v for (v,) in check.execute("SELECT v FROM t"))
    finally:
        check.close()


class Insert(BatchOp[int, int]):
    """Inserts every item of a run with one statement, as the stores' batch operations do."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def run(self, conn: sqlite3.Connection, items: list[int]) -> list[int]:
        self.calls.append(items)
        conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in items])
        return items


def test_a_failing_job_fails_alone_and_the_rest_of_its_batch_commits(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (v INTEGER)")
    setup.commit()
    setup.close()
    writer = GroupCommitWriter(lambda: sqlite3.connect(path, isolation_level=None))

    def insert(value: int) -> object:
        def job(conn: sqlite3.Connection) -> int:
            if value == 2:
                raise RuntimeError("bad job")
            conn.execute("INSERT INTO t VALUES (?)", (value,))
            return value

        return job

    futures = [writer.submit_sync(insert(v)) for v in (1, 2, 3)]  # type: ignore[arg-type]
    writer.start()
    assert futures[0].result(10) == 1 and futures[2].result(10) == 3
    with pytest.raises(RuntimeError, match="bad job"):
        futures[1].result(10)
    writer.close()
    check = sqlite3.connect(path)
    assert sorted(v for (v,) in check.execute("SELECT v FROM t")) == [1, 3]
    check.close()


def test_a_job_failing_on_its_own_values_is_unstorable_not_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer = GroupCommitWriter(lambda: sqlite3.connect(path, isolation_level=None))
    writer.start()
    try:
        with pytest.raises(UnstorablePayload, match="OverflowError") as caught:
            writer.run(lambda conn: conn.execute("SELECT ?", (2**64,)))
        assert caught.value.http_status == 400
    finally:
        writer.close()


def test_consecutive_items_of_one_operation_are_written_in_one_call(table: Path) -> None:
    insert = Insert()
    writer = GroupCommitWriter(lambda: sqlite3.connect(table, isolation_level=None))
    futures = [writer.submit_item_sync(insert, v) for v in (1, 2, 3)]
    writer.start()
    assert [future.result(10) for future in futures] == [1, 2, 3]
    writer.close()
    assert insert.calls == [[1, 2, 3]]
    assert (writer.commits, writer.items) == (1, 3)


def test_an_item_failing_inside_a_run_fails_alone_and_its_neighbours_commit(table: Path) -> None:
    insert = Insert()
    writer = GroupCommitWriter(lambda: sqlite3.connect(table, isolation_level=None))
    futures = [writer.submit_item_sync(insert, v) for v in (1, 2, 2, 3)]
    writer.start()
    assert [futures[i].result(10) for i in (0, 1, 3)] == [1, 2, 3]
    with pytest.raises(UnstorablePayload, match="IntegrityError"):
        futures[2].result(10)
    writer.close()
    assert values(table) == [1, 2, 3]
    assert writer.commits == 1


def test_the_writer_translates_a_failure_for_its_caller(table: Path) -> None:
    def translate(exc: Exception) -> BaseException:
        return StoreUnavailable(f"translated {type(exc).__name__}")

    writer = GroupCommitWriter(
        lambda: sqlite3.connect(table, isolation_level=None), translate=translate
    )
    writer.start()
    try:
        with pytest.raises(StoreUnavailable, match="translated OperationalError"):
            writer.run(lambda conn: conn.execute("INSERT INTO missing VALUES (1)"))
    finally:
        writer.close()


async def test_an_event_loop_caller_gets_its_result_after_the_commit(table: Path) -> None:
    writer = GroupCommitWriter(lambda: sqlite3.connect(table, isolation_level=None))
    await asyncio.wrap_future(writer.start())
    results = await asyncio.gather(
        *(
            writer.submit(lambda conn, v=v: conn.execute("INSERT INTO t VALUES (?)", (v,)).rowcount)
            for v in range(5)
        )
    )
    assert results == [1] * 5
    assert values(table) == [0, 1, 2, 3, 4]  # committed: another connection sees them
    await asyncio.to_thread(writer.close)


async def test_a_writer_that_cannot_connect_says_so_and_takes_no_more_work() -> None:
    def fail() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    writer = GroupCommitWriter(fail)
    with pytest.raises(sqlite3.OperationalError):
        await asyncio.wrap_future(writer.start())
    with pytest.raises(StoreUnavailable):
        writer.submit_sync(lambda conn: None)


async def test_a_per_tick_writer_takes_one_pass_of_the_loop_as_one_batch(table: Path) -> None:
    insert = Insert()
    writer = GroupCommitWriter(lambda: sqlite3.connect(table, isolation_level=None), per_tick=True)
    await asyncio.wrap_future(writer.start())
    first_pass = [writer.submit_item(insert, v) for v in (1, 2, 3)]
    assert await asyncio.gather(*first_pass) == [1, 2, 3]
    second_pass = [writer.submit_item(insert, v) for v in (4, 5)]
    assert await asyncio.gather(*second_pass) == [4, 5]
    await asyncio.to_thread(writer.close)
    assert insert.calls == [[1, 2, 3], [4, 5]]
    assert (writer.commits, writer.items) == (2, 5)


async def test_a_pass_handed_over_after_close_fails_as_store_unavailable(table: Path) -> None:
    insert = Insert()
    writer = GroupCommitWriter(lambda: sqlite3.connect(table, isolation_level=None), per_tick=True)
    await asyncio.wrap_future(writer.start())
    gathered = writer.submit_item(insert, 1)
    writer.close()  # before this pass of the loop has ended
    with pytest.raises(StoreUnavailable):
        await gathered
    assert insert.calls == []


def test_writing_after_close_is_store_unavailable(table: Path) -> None:
    writer = GroupCommitWriter(lambda: sqlite3.connect(table, isolation_level=None))
    writer.start()
    writer.close()
    with pytest.raises(StoreUnavailable):
        writer.run(lambda conn: None)


SCRIPTS = [(1, "CREATE TABLE a (x INTEGER);"), (2, "CREATE TABLE b (y INTEGER);")]


def test_migrations_run_in_order_up_to_the_latest_and_record_the_version() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    assert migrate(conn, SCRIPTS, too_new=lambda found, known: RuntimeError()) == 0
    assert conn.execute("PRAGMA user_version").fetchone() == (2,)
    assert migrate(conn, SCRIPTS, too_new=lambda found, known: RuntimeError()) == 2
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"a", "b"}


def test_a_migration_that_fails_leaves_the_file_at_the_version_before_it() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    broken = [*SCRIPTS, (3, "CREATE TABLE c (z INTEGER); CREATE TABLE a (x INTEGER);")]
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, broken, too_new=lambda found, known: RuntimeError())
    assert conn.execute("PRAGMA user_version").fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'c'").fetchone() == (0,)


def test_a_migration_step_with_data_runs_in_its_migration() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)

    def fill(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO b VALUES (7)")

    migrate(conn, SCRIPTS, too_new=lambda found, known: RuntimeError(), with_data={2: fill})
    assert conn.execute("SELECT y FROM b").fetchall() == [(7,)]


def test_a_file_newer_than_the_code_is_refused() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("PRAGMA user_version = 5")
    with pytest.raises(RuntimeError, match="5 > 2"):
        migrate(conn, SCRIPTS, too_new=lambda found, known: RuntimeError(f"{found} > {known}"))
