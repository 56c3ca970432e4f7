"""A worker that stalls for longer than its lease while it writes outcomes (issue 19).

Two ``dhan-postback worker`` processes on one PostgreSQL outbox, a 2 s lease, and a receiver
that answers a first arrival in 0.1 s and a re-send in 4 s. The first worker sends every
order's first update; the test holds the queues' locks so that the commit of those outcomes
waits, then stops the worker with SIGSTOP. Its leases run out unrenewed, the second worker
claims the same deliveries and re-sends them (slowly); then the locks go and the first worker
continues with SIGCONT, its stale commit going ahead first. Then:

* every update reaches the receiver;
* each order's updates are answered in order: the stale commit hands over no successor while
  the second worker's re-send of its predecessor is still being answered;
* the first worker counts the outcomes it could not write (``found_at="finish"``) and logs
  them.

SQLite is left out: two processes do not share one SQLite outbox (its node is one process).
"""

from __future__ import annotations

import asyncio
import functools
import signal
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import psycopg
import pytest

from dhan_postback.service.store.postgres import PostgresStore
from tests.helpers.outbox import Outbox
from tests.helpers.processes import FAST_RETRIES, ServerProcess
from tests.helpers.receivers import Received, RecordingReceiver, Reply
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.updates import order_updates
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(180)]

ORDERS = 20
PER_ORDER = 3
FIRST = Reply(delay=0.1)
AGAIN = Reply(delay=4.0)
"""A re-send is answered long after a successor sent at once would be."""


def answer(request: Received) -> Reply:
    return FIRST if request.attempt == 1 else AGAIN


@functools.cache
def position(body: bytes) -> tuple[str, int]:
    """(orderId, its update's number): order_updates stamps update n at second n."""
    update = msgspec.json.decode(body)
    return update["orderId"], int(update["updateTime"][-2:])


def answered_out_of_order(receiver: RecordingReceiver) -> dict[str, list[int]]:
    """Each order's updates in the order they were answered (arrival plus the answer's
    delay), for the orders where that goes back (a re-send may repeat one, never go back)."""
    numbers: defaultdict[str, list[tuple[float, int]]] = defaultdict(list)
    for request in receiver.snapshot():
        order_id, number = position(request.body)
        numbers[order_id].append((request.arrived + request.reply.delay, number))
    answered = {order: [n for _, n in sorted(seen)] for order, seen in numbers.items()}
    return {order: seen for order, seen in answered.items() if seen != sorted(seen)}


def distinct(receiver: RecordingReceiver) -> int:
    return len({position(request.body) for request in receiver.snapshot()})


def resent(receiver: RecordingReceiver) -> int:
    return sum(request.attempt > 1 for request in receiver.snapshot())


def lost_at_finish(metrics_url: str) -> float:
    text = httpx.get(metrics_url, timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('dhan_postback_leases_lost_total{found_at="finish"}')
    )


async def fill(pg_url: str, hook_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    try:
        outbox = await Outbox(store).open(hook_url)
        await outbox.add(hook_url, order_updates(ORDERS, PER_ORDER))
    finally:
        await store.close()


def waiting_commits(conn: psycopg.Connection[tuple[int]]) -> int:
    """Transactions waiting for a queue lock the test holds."""
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    ).fetchone()
    assert row is not None
    return row[0]


def worker(pg_url: str, port: int, log_path: Path) -> ServerProcess:
    return ServerProcess(
        [
            *("worker", "--db", pg_url, "--allow-loopback", "--port", str(port)),
            *("--lease", "2s", "--timeout", "10s"),
        ],
        env={"DHAN_POSTBACK_RETRY_SCHEDULE": FAST_RETRIES},
        health_url=f"http://127.0.0.1:{port}/healthz",
        log_path=log_path,
    )


@pytest.fixture
def receiver() -> Iterator[tuple[RecordingReceiver, str]]:
    recorder = RecordingReceiver(answer)
    with UvicornThread(recorder.app) as server:
        yield recorder, server.url + "/hook"


def test_a_worker_stalled_past_its_lease_hands_over_nothing_when_it_wakes(
    pg_url: str, receiver: tuple[RecordingReceiver, str], tmp_path: Path
) -> None:
    recorder, hook_url = receiver
    asyncio.run(fill(pg_url, hook_url))
    first_port, second_port = free_port(), free_port()
    stalled = worker(pg_url, first_port, tmp_path / "stalled.log")
    taking_over = worker(pg_url, second_port, tmp_path / "taking-over.log")
    with psycopg.connect(pg_url, autocommit=True) as locks:
        # Every queue locked, as a finish locks it: the first worker's commit of its outcomes
        # waits for the test (claims do not take these locks).
        locks.execute(
            "SELECT pg_advisory_lock(hashtextextended(url || chr(31) || order_id, 0))"
            " FROM (SELECT DISTINCT url, order_id FROM deliveries) AS q"
        )
        with stalled:
            wait_until(lambda: distinct(recorder) >= ORDERS, 30, "every order's first update")
            wait_until(lambda: waiting_commits(locks) > 0, 30, "the outcomes' commit waiting")
            assert stalled.process is not None
            stalled.process.send_signal(signal.SIGSTOP)
            try:
                with taking_over:
                    wait_until(lambda: resent(recorder) >= ORDERS, 30, "the leases taken over")
                    locks.execute("SELECT pg_advisory_unlock_all()")
                    stalled.process.send_signal(signal.SIGCONT)
                    wait_until(lambda: distinct(recorder) == ORDERS * PER_ORDER, 60, "every update")
                    lost = lost_at_finish(f"http://127.0.0.1:{first_port}/metrics")
            finally:
                stalled.process.send_signal(signal.SIGCONT)

    assert answered_out_of_order(recorder) == {}
    assert lost >= 1
    log = (tmp_path / "stalled.log").read_text()
    assert "leases lost to another node before their outcomes were written" in log
