"""The dispatcher against real receivers on loopback: what arrives, how, and how often."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest
import standardwebhooks

from dhan_postback._version import __version__
from dhan_postback.service.dispatcher import Dispatcher
from dhan_postback.service.metrics import ServiceMetrics, endpoint_label
from dhan_postback.service.node import ServiceNode
from dhan_postback.service.store.base import DeliveryStatus, Store
from dhan_postback.service.store.memory import MemoryStore
from tests.helpers.dispatching import deliver_one, fast_settings, settled
from tests.helpers.outbox import Outbox
from tests.helpers.receivers import RecordingReceiver, Reply, always, fail_first, flaky
from tests.helpers.servers import MultiPortServer, UvicornThread
from tests.helpers.updates import order_updates, simulated_bodies
from tests.helpers.waiting import eventually
from tests.integration.conftest import StoreMaker

pytestmark = pytest.mark.timeout(60)

FAULTS = (
    Reply(500),
    Reply(502),
    Reply(503),
    Reply(429, headers={"Retry-After": "0"}),
    Reply(302, headers={"Location": "/moved"}),
    Reply(reset=True),
    Reply(delay=0.7),  # answers after the dispatcher's 0.5 s timeout
)
PATIENT = "0s,10ms,20ms,40ms,80ms" + ",100ms" * 15
"""Twenty attempts: a delivery to a 30 %-faulty receiver dies with odds of about 1 in 3e10.

(Twelve were too few: 0.3**12 * 5,000 deliveries made one death in about 350 runs.)"""


async def test_every_update_is_delivered_despite_a_faulty_receiver(
    store: Store, store_maker: StoreMaker
) -> None:
    receiver = RecordingReceiver(flaky(0.3, FAULTS, seed=1))
    # About 5,000 updates on SQLite; the memory store's claim scans every row, so 1,000 there.
    orders = 1250 if store_maker.backend == "sqlite" else 250
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        bodies = simulated_bodies(orders, seed=1)
        await outbox.add(server.url + "/hook", bodies)
        async with Dispatcher(store, fast_settings(retry_schedule=PATIENT)):
            counts = await settled(store, len(bodies), timeout=45)

    assert counts[DeliveryStatus.DELIVERED] == len(bodies)
    accepted = {r.webhook_id: r.body for r in receiver.accepted()}
    assert {d.id: d.payload for d in outbox.deliveries}.items() <= accepted.items()
    assert len(receiver.snapshot()) > len(bodies)  # the faults really happened


async def test_updates_of_one_order_arrive_in_the_order_they_were_submitted(store: Store) -> None:
    receiver = RecordingReceiver(flaky(0.3, FAULTS, seed=2))
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        bodies = simulated_bodies(60, seed=2)
        await outbox.add(server.url + "/hook", bodies)
        async with Dispatcher(store, fast_settings(retry_schedule=PATIENT)):
            await settled(store, len(bodies), timeout=45)

    submitted: dict[str, list[str]] = defaultdict(list)
    for delivery in outbox.deliveries:
        submitted[delivery.order_id].append(delivery.id)
    arrived: dict[str, list[str]] = defaultdict(list)
    ids_to_order = {d.id: d.order_id for d in outbox.deliveries}
    for request in receiver.first_arrivals():  # a receiver dedupes by webhook-id
        arrived[ids_to_order[request.webhook_id]].append(request.webhook_id)
    assert arrived == submitted


async def test_the_body_arrives_byte_identical_to_the_stored_payload(store: Store) -> None:
    receiver = RecordingReceiver()
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        bodies = order_updates(3, 3)
        await outbox.add(server.url + "/hook", bodies)
        async with Dispatcher(store, fast_settings()):
            await settled(store, len(bodies))

    assert sorted(r.body for r in receiver.snapshot()) == sorted(bodies)


async def test_each_request_carries_the_documented_headers(store: Store) -> None:
    receiver = RecordingReceiver()
    delivery, _ = await deliver_one(store, receiver)

    [request] = receiver.snapshot()
    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"dhan-postback/{__version__}"
    assert request.headers["webhook-id"] == delivery.id
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    assert request.headers["webhook-signature"].startswith("v1,")


async def test_signatures_verify_with_the_standard_webhooks_library(store: Store) -> None:
    receiver = RecordingReceiver(fail_first(1))
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        await outbox.add(server.url + "/hook", order_updates(5, 2))
        async with Dispatcher(store, fast_settings()):
            await settled(store, 10)

    verifier = standardwebhooks.Webhook(outbox.secret)
    requests = receiver.snapshot()
    assert len(requests) == 20
    for request in requests:
        verifier.verify(request.body, dict(request.headers))


async def test_a_delivery_keeps_its_webhook_id_on_every_attempt(store: Store) -> None:
    receiver = RecordingReceiver(fail_first(2))
    delivery, _ = await deliver_one(store, receiver)

    assert [r.webhook_id for r in receiver.snapshot()] == [delivery.id] * 3


async def test_attempts_follow_the_retry_schedule(store: Store) -> None:
    receiver = RecordingReceiver(fail_first(2))
    settings = fast_settings(retry_schedule="0s,300ms,600ms")
    _, attempts = await deliver_one(store, receiver, settings)

    first, second, third = (r.arrived for r in receiver.snapshot())
    assert second - first >= 0.15  # jitter keeps at least half of each delay
    assert third - second >= 0.3
    assert [a.status_code for a in attempts] == [500, 500, 200]
    assert [a.number for a in attempts] == [1, 2, 3]


async def test_retry_after_postpones_the_next_attempt(store: Store) -> None:
    receiver = RecordingReceiver(fail_first(1, Reply(429, headers={"Retry-After": "1"})))
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        await outbox.add(server.url + "/hook", order_updates(1, 1))
        async with Dispatcher(store, fast_settings(retry_schedule="0s,10ms")):
            await settled(store, 1)

    first, second = (r.arrived for r in receiver.snapshot())
    assert second - first >= 0.9


async def test_retry_after_is_capped(store: Store) -> None:
    receiver = RecordingReceiver(fail_first(1, Reply(503, headers={"Retry-After": "3600"})))
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        await outbox.add(server.url + "/hook", order_updates(1, 1))
        settings = fast_settings(retry_schedule="0s,10ms", retry_after_cap=0.3)
        async with Dispatcher(store, settings):
            counts = await settled(store, 1)

    assert counts[DeliveryStatus.DELIVERED] == 1
    first, second = (r.arrived for r in receiver.snapshot())
    assert second - first >= 0.25


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(store: Store) -> None:
    receiver = RecordingReceiver(always(Reply(302, headers={"Location": "/moved"})))
    metrics = ServiceMetrics()
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        [delivery] = await outbox.add(server.url + "/hook", order_updates(1, 1))
        async with Dispatcher(store, fast_settings(), metrics=metrics):
            await settled(store, 1)
        attempts = await store.get_attempts(delivery.id)
        stored = await store.get_delivery(delivery.id)

    assert {r.path for r in receiver.snapshot()} == {"/hook"}
    assert [a.status_code for a in attempts] == [302, 302, 302]
    assert stored is not None and stored.status is DeliveryStatus.DEAD
    labels = {"endpoint": endpoint_label(server.url)}
    assert metrics.registry.get_sample_value("dhan_postback_failed_attempts_total", labels) == 3
    assert metrics.registry.get_sample_value("dhan_postback_dead_total", labels) == 1


async def test_a_dead_delivery_releases_its_successor_flagged_after_dead(store: Store) -> None:
    doomed: set[str] = set()
    receiver = RecordingReceiver(lambda r: Reply(500) if r.webhook_id in doomed else Reply())
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        first, second = await outbox.add(server.url + "/hook", order_updates(1, 2))
        doomed.add(first.id)
        async with Dispatcher(store, fast_settings()):
            await settled(store, 2)
        dead = await store.get_delivery(first.id)
        released = await store.get_delivery(second.id)

    assert dead is not None and dead.status is DeliveryStatus.DEAD and dead.attempts == 3
    assert released is not None and released.status is DeliveryStatus.DELIVERED
    assert released.after_dead
    assert [r.webhook_id for r in receiver.snapshot()] == [first.id] * 3 + [second.id]


async def test_an_attempt_records_status_latency_and_the_start_of_the_answer(store: Store) -> None:
    receiver = RecordingReceiver(fail_first(1, Reply(500, body=b"x" * 2000)))
    _, (failed, succeeded) = await deliver_one(store, receiver)

    assert (failed.status_code, failed.error) == (500, "HTTP 500")
    assert failed.response_prefix == "x" * 512
    assert failed.latency_ms > 0
    assert failed.started_at <= succeeded.started_at
    assert (succeeded.status_code, succeeded.response_prefix) == (200, "ok")


async def test_a_timeout_is_a_failed_attempt_with_no_status(store: Store) -> None:
    receiver = RecordingReceiver(fail_first(1, Reply(delay=1.0)))
    _, (timed_out, _) = await deliver_one(store, receiver, fast_settings(timeout=0.3))

    assert timed_out.status_code is None
    assert timed_out.error is not None and "timeout" in timed_out.error


async def test_a_reset_connection_is_a_failed_attempt(store: Store) -> None:
    receiver = RecordingReceiver(fail_first(1, Reply(reset=True)))
    _, (reset, delivered) = await deliver_one(store, receiver)

    assert reset.error is not None
    assert delivered.status_code == 200


async def test_a_refused_connection_is_retried_then_dead(store: Store) -> None:
    with UvicornThread(RecordingReceiver().app) as gone:
        url = gone.url + "/hook"
    outbox = await Outbox(store).open(url)
    [delivery] = await outbox.add(url, order_updates(1, 1))
    async with Dispatcher(store, fast_settings()):
        await settled(store, 1)
    attempts = await store.get_attempts(delivery.id)

    assert len(attempts) == 3
    assert all(a.status_code is None and a.error for a in attempts)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_loopback_is_refused_at_connect_time_unless_allowed(host: str, store: Store) -> None:
    receiver = RecordingReceiver()
    with UvicornThread(receiver.app) as server:
        url = f"http://{host}:{server.port}/hook"
        outbox = await Outbox(store).open(url)
        [delivery] = await outbox.add(url, order_updates(1, 1))
        async with Dispatcher(store, fast_settings(allow_loopback=False)):
            await settled(store, 1)
        attempts = await store.get_attempts(delivery.id)

    assert receiver.snapshot() == []
    assert len(attempts) == 3
    assert all(a.status_code is None and a.error and "loopback" in a.error for a in attempts)


async def test_metrics_count_deliveries_failures_and_latency(store: Store) -> None:
    receiver = RecordingReceiver(fail_first(1))
    metrics = ServiceMetrics()
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        await outbox.add(server.url + "/hook", order_updates(10, 1))
        async with Dispatcher(store, fast_settings(), metrics=metrics):
            await settled(store, 10)

    labels = {"endpoint": endpoint_label(server.url)}
    sample = metrics.registry.get_sample_value
    assert sample("dhan_postback_delivered_total", labels) == 10
    assert sample("dhan_postback_failed_attempts_total", labels) == 10
    assert sample("dhan_postback_attempt_latency_seconds_count", {}) == 20
    assert sample("dhan_postback_in_flight", labels) == 0


async def test_wake_sends_new_deliveries_without_waiting_for_the_poll(store: Store) -> None:
    receiver = RecordingReceiver()
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        async with Dispatcher(store, fast_settings(), idle_poll=30) as dispatcher:
            await outbox.add(server.url + "/hook", order_updates(1, 1))
            dispatcher.wake()
            counts = await settled(store, 1, timeout=10)

    assert counts[DeliveryStatus.DELIVERED] == 1


async def test_a_retry_coming_due_is_sent_without_waiting_for_the_poll(store: Store) -> None:
    receiver = RecordingReceiver(fail_first(1))
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        await outbox.add(server.url + "/hook", order_updates(1, 1))
        async with Dispatcher(store, fast_settings(), idle_poll=30):
            counts = await settled(store, 1, timeout=10)

    assert counts[DeliveryStatus.DELIVERED] == 1


async def test_a_node_runs_a_dispatcher_and_its_wake_reaches_it(store: Store) -> None:
    receiver = RecordingReceiver()
    node = ServiceNode(fast_settings(), store=store)
    node.wake()  # before the start: nothing to wake, no error
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        async with node:
            assert node.dispatcher is not None
            await outbox.add(server.url + "/hook", order_updates(2, 2))
            node.wake()
            await settled(store, 4, timeout=10)
    assert node.dispatcher is None
    await eventually(lambda: len(receiver.snapshot()) == 4)


async def test_wake_may_be_called_from_another_thread(store: Store) -> None:
    receiver = RecordingReceiver()
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        async with Dispatcher(store, fast_settings(), idle_poll=30) as dispatcher:
            await outbox.add(server.url + "/hook", order_updates(1, 1))
            waker = threading.Thread(target=dispatcher.wake)
            waker.start()
            waker.join()
            counts = await settled(store, 1, timeout=10)

    assert counts[DeliveryStatus.DELIVERED] == 1


async def test_an_endpoints_idle_connection_is_reused_on_its_next_visit() -> None:
    receiver = RecordingReceiver()
    store = MemoryStore()
    settings = fast_settings(max_in_flight_per_url=1, max_in_flight=8)
    with MultiPortServer(receiver.app, 20) as servers:
        outboxes = [await Outbox(store).open(url) for url in servers.urls]
        async with Dispatcher(store, settings) as dispatcher:
            for wave in range(3):  # each endpoint visited once a wave, the others in between
                for url, outbox in zip(servers.urls, outboxes, strict=True):
                    await outbox.add(url + "/hook", order_updates(wave + 1, 1)[wave:])
                dispatcher.wake()
                await settled(store, 20 * (wave + 1))

    requests = receiver.snapshot()
    connections = {(request.port, request.client_port) for request in requests}
    assert len(requests) == 60
    assert len(connections) == 20  # one per endpoint, kept from wave to wave
