"""``dhan-postback worker`` as a real process on a SQLite outbox: kill -9 it, SIGTERM it."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dhan_postback.service.store import Store, create_store
from dhan_postback.service.store.base import DeliveryQuery, DeliveryStatus
from tests.helpers.dispatching import settled
from tests.helpers.outbox import Outbox
from tests.helpers.processes import ServerProcess
from tests.helpers.receivers import RecordingReceiver, Reply, always
from tests.helpers.servers import UvicornThread, free_port
from tests.helpers.updates import order_updates
from tests.helpers.waiting import eventually

pytest.importorskip("dhan_postback.service.store.sqlite")
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'outbox.db'}"


@pytest.fixture
async def store(db: str) -> AsyncIterator[Store]:
    opened = create_store(db)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def worker_args(db: str, *extra: str) -> list[str]:
    return [
        "worker",
        "--db",
        db,
        "--allow-loopback",
        "--retry-schedule",
        "0s,50ms,100ms,200ms,400ms",
        "--timeout",
        "2s",
        "--lease",
        "3s",
        "--max-in-flight-per-url",
        "8",
        *extra,
    ]


async def test_a_killed_worker_loses_nothing_and_resends_with_the_same_ids(
    db: str, store: Store
) -> None:
    receiver = RecordingReceiver(
        always(Reply(delay=0.2))
    )  # slow answers: the kill lands mid-flight
    with UvicornThread(receiver.app) as server:
        url = server.url + "/hook"
        outbox = await Outbox(store).open(url)
        await outbox.add(url, order_updates(30, 4))
        first = ServerProcess(worker_args(db)).start()
        try:
            await eventually(lambda: len(receiver.snapshot()) >= 24, timeout=30)
        finally:
            first.kill()  # SIGKILL: no release, no finish
        sent_before_kill = {r.webhook_id for r in receiver.snapshot()}
        recorded = await _delivered_ids(store)

        with ServerProcess(worker_args(db)):
            counts = await settled(store, 120, timeout=60)

    assert counts[DeliveryStatus.DELIVERED] == 120
    unrecorded = sent_before_kill - recorded
    assert unrecorded, "the kill should have caught POSTs under way"
    for webhook_id in unrecorded:
        assert len(receiver.arrivals_of(webhook_id)) >= 2  # sent again, same webhook-id
    assert _first_arrivals_by_order(receiver, outbox) == _submitted_by_order(outbox)


async def test_sigterm_finishes_posts_under_way_and_gives_back_the_rest(
    db: str, store: Store
) -> None:
    receiver = RecordingReceiver(always(Reply(delay=0.5)))
    with UvicornThread(receiver.app) as server:
        url = server.url + "/hook"
        outbox = await Outbox(store).open(url)
        await outbox.add(url, order_updates(100, 1))
        worker = ServerProcess(worker_args(db, "--shutdown-grace", "5s")).start()
        try:
            await eventually(lambda: len(receiver.snapshot()) >= 8, timeout=30)
        finally:
            worker.terminate()
        assert worker.process is not None and worker.process.returncode == 0
        counts = await store.counts()
        other_node = await store.claim(limit=1000, now=time.time(), lease=5)

    arrived = len(receiver.snapshot())
    assert counts[DeliveryStatus.DELIVERED] == arrived  # every POST under way was recorded
    assert len(other_node) == 100 - arrived  # and nothing else is held by the stopped worker


async def _delivered_ids(store: Store) -> set[str]:
    rows = await store.list_deliveries(DeliveryQuery(status=DeliveryStatus.DELIVERED, limit=10_000))
    return {row.id for row in rows}


def _submitted_by_order(outbox: Outbox) -> dict[str, list[str]]:
    submitted: dict[str, list[str]] = defaultdict(list)
    for delivery in outbox.deliveries:
        submitted[delivery.order_id].append(delivery.id)
    return submitted


def _first_arrivals_by_order(receiver: RecordingReceiver, outbox: Outbox) -> dict[str, list[str]]:
    order_of = {d.id: d.order_id for d in outbox.deliveries}
    arrived: dict[str, list[str]] = defaultdict(list)
    for request in receiver.first_arrivals():
        arrived[order_of[request.webhook_id]].append(request.webhook_id)
    return arrived


async def test_a_worker_with_a_port_serves_health_and_metrics(db: str, store: Store) -> None:
    import httpx

    port = free_port()
    health = f"http://127.0.0.1:{port}/healthz"
    with ServerProcess(worker_args(db, "--port", str(port)), health_url=health):
        async with httpx.AsyncClient() as client:
            assert (await client.get(health)).json() == {"status": "ok"}
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    assert "dhan_postback_delivered" in metrics
    assert 'dhan_postback_deliveries{status="pending"}' in metrics
