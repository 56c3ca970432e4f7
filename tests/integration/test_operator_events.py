"""Operator events, received by a real receiver on loopback as ``--operator-url``.

A real service (uvicorn, its node sending the outbox) on SQLite and on PostgreSQL delivers
postbacks to one recording receiver (which a test can take "down": it answers 500) and its
operator events to another. Each event type arrives signed with the operator secret, as
``{"type", "timestamp", "data"}``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from dhan_postback.service.dispatcher import Dispatcher
from dhan_postback.service.events import OPERATOR, EventType, OperatorEvents
from dhan_postback.service.ids import derived_delivery_id
from dhan_postback.service.store import Delivery, DeliveryQuery, Store, Target
from dhan_postback.settings import ServiceSettings
from dhan_postback.signing import generate_secret, verify
from tests.helpers.dispatching import fast_settings, settled
from tests.helpers.outbox import Outbox
from tests.helpers.receivers import OK, Received, RecordingReceiver, Reply
from tests.helpers.servers import UvicornThread
from tests.helpers.service import Service, running_service
from tests.helpers.updates import new_client_id, order_updates, update
from tests.helpers.waiting import eventually, wait_until

from .conftest import StoreMaker

FAILING_AFTER = 0.3


@dataclass
class Switch:
    """A receiver that answers 500 while ``down``."""

    down: bool = False

    def __call__(self, _: Received) -> Reply:
        return Reply(500) if self.down else OK


@dataclass
class World:
    service: Service
    postbacks: RecordingReceiver
    postbacks_url: str
    switch: Switch
    operator: RecordingReceiver
    operator_url: str
    operator_secret: str

    def events(self) -> list[dict[str, Any]]:
        """Each operator event received (first arrival of each webhook-id), its signature
        checked with the operator secret."""
        found = []
        for request in self.operator.first_arrivals():
            verify(self.operator_secret, request.headers, request.body)
            event: dict[str, Any] = json.loads(request.body)
            assert set(event) == {"type", "timestamp", "data"}
            found.append(event)
        return found

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events() if event["type"] == kind]


@contextlib.contextmanager
def running_world(db: str, directory: Path, **overrides: Any) -> Iterator[World]:
    """The service on ``db`` with the two receivers; ``overrides`` change its settings."""
    switch = Switch()
    postbacks, operator = RecordingReceiver(switch), RecordingReceiver()
    secret = generate_secret()
    with UvicornThread(postbacks.app) as hooks, UvicornThread(operator.app) as ops:
        settings: dict[str, Any] = {
            "db": db,
            "dispatch": True,
            "operator_url": ops.url + "/events",
            "operator_secret": secret,
            "failing_after": FAILING_AFTER,
            "retry_schedule": "0s" + ",100ms" * 50,
            "timeout": 5.0,
            "breaker_min_attempts": 3,
            "breaker_window": 30.0,
            "breaker_cooldown": 0.05,
            "breaker_max_cooldown": 0.1,
            **overrides,
        }
        with running_service(directory, **settings) as service:
            yield World(service, postbacks, hooks.url, switch, operator, ops.url, secret)


@pytest.fixture
def world(service_db: str, tmp_path: Path) -> Iterator[World]:
    with running_world(service_db, tmp_path) as running:
        yield running


def token_for(world: World, path: str = "/hook") -> tuple[str, dict[str, Any]]:
    client = new_client_id()
    return client, world.service.create_token(client, postback_url=world.postbacks_url + path)


def test_pausing_and_resuming_are_events_in_that_order(world: World) -> None:
    client, token = token_for(world)
    endpoint_id = token["endpointId"]
    admin = world.service.admin
    for action in ("pause", "pause", "resume", "resume"):  # the second of each changes nothing
        path = f"/v2/endpoints/{endpoint_id}/{action}"
        assert world.service.http.post(path, headers=admin).status_code == 200

    wait_until(lambda: len(world.events()) == 2)
    paused, resumed = world.events()
    assert [paused["type"], resumed["type"]] == ["endpoint.paused", "endpoint.resumed"]
    for event in (paused, resumed):
        assert event["data"] == {
            "endpointId": endpoint_id,
            "postbackUrl": world.postbacks_url + "/hook",
            "dhanClientId": client,
            "partnerId": None,
        }
        assert event["timestamp"].endswith("+05:30")


def test_a_dead_delivery_is_an_event(service_db: str, tmp_path: Path) -> None:
    with running_world(
        service_db, tmp_path, retry_schedule="0s,10ms", breaker_min_attempts=10_000
    ) as world:
        client, token = token_for(world)
        world.switch.down = True
        [delivery_id] = world.service.delivery_ids(token["accessToken"], [update(client)])
        wait_until(lambda: world.events_of("delivery.dead"))
        [dead] = world.events_of("delivery.dead")

    assert dead["data"] == {
        "deliveryId": delivery_id,
        "postbackUrl": world.postbacks_url + "/hook",
        "orderId": f"{client}-order",
        "attempts": 2,
        "lastStatusCode": 500,
        "lastError": "HTTP 500",
    }


def test_an_endpoint_down_longer_than_failing_after_is_failing_then_recovered(
    world: World,
) -> None:
    client, token = token_for(world)
    world.switch.down = True
    updates = [update(client, f"{client}-{n}") for n in range(5)]
    world.service.delivery_ids(token["accessToken"], updates)

    wait_until(lambda: world.events_of("endpoint.failing"))
    world.switch.down = False
    wait_until(lambda: world.events_of("endpoint.recovered"))
    wait_until(lambda: len(world.postbacks.accepted()) == len(updates))

    [failing] = world.events_of("endpoint.failing")
    [recovered] = world.events_of("endpoint.recovered")
    url = world.postbacks_url + "/hook"
    assert failing["data"] == {
        "postbackUrl": url,
        "failingSince": failing["data"]["failingSince"],
        "endpointIds": [token["endpointId"]],
    }
    assert recovered["data"] == {**failing["data"], "recoveredAt": recovered["data"]["recoveredAt"]}
    assert recovered["data"]["recoveredAt"] > failing["data"]["failingSince"]
    assert [e["type"] for e in world.events()] == ["endpoint.failing", "endpoint.recovered"]


def test_the_operator_endpoint_is_listed_as_its_own_owner(world: World) -> None:
    found = world.service.http.get("/v2/endpoints", headers=world.service.admin).json()
    [ours] = [e for e in found["endpoints"] if e["postbackUrl"] == world.operator_url + "/events"]
    assert ours["partnerId"] == OPERATOR


# Through the store, on every backend -----------------------------------------------------------

OPERATOR_URL = "https://ops.example/events"
HOOK = "https://hooks.example/hook"


def events_settings() -> ServiceSettings:
    return ServiceSettings(operator_url=OPERATOR_URL, operator_secret=generate_secret())


async def operator_deliveries(store: Store) -> list[Delivery]:
    return await store.list_deliveries(DeliveryQuery(partner_id=OPERATOR, target=Target.PARTNER))


async def test_an_event_about_the_operator_url_itself_is_not_sent(store: Store) -> None:
    events = OperatorEvents(store, events_settings(), wake=lambda: None)
    await events.open()
    data = {"deliveryId": "msg_x", "postbackUrl": OPERATOR_URL, "attempts": 1}
    await events.send(EventType.DEAD, OPERATOR_URL, data)
    events.report(EventType.DEAD, OPERATOR_URL, data)
    await events.close()
    assert await operator_deliveries(store) == []


async def test_two_nodes_reporting_one_outage_commit_one_event(store_maker: StoreMaker) -> None:
    if not store_maker.durable:
        pytest.skip(f"{store_maker.backend} is one process's memory: it has one node")
    nodes = [store_maker(), store_maker()]
    for store in nodes:
        await store.open()
    try:
        settings = events_settings()
        senders = [OperatorEvents(store, settings, wake=lambda: None) for store in nodes]
        for sender in senders:
            await sender.open()
        same = derived_delivery_id("endpoint.failing", HOOK, 0.0, at=1_700_000_000.0)
        data = {"postbackUrl": HOOK, "failingSince": "2023-11-15T03:43:20.000+05:30"}
        for sender in senders:
            await sender.send(EventType.FAILING, HOOK, data, same)
        [committed] = await operator_deliveries(nodes[0])
        assert committed.id == same
        assert json.loads(committed.payload)["type"] == "endpoint.failing"
    finally:
        for store in nodes:
            await store.close()


# The log of an outage ---------------------------------------------------------------------------


async def test_an_outage_with_many_failed_probes_is_one_line_down_and_one_line_up(
    store: Store,
) -> None:
    switch = Switch(down=True)
    receiver = RecordingReceiver(switch)
    settings = fast_settings(
        retry_schedule="0s" + ",50ms" * 200,
        breaker_min_attempts=3,
        breaker_cooldown=0.01,
        breaker_max_cooldown=0.02,
    )
    with UvicornThread(receiver.app) as server:
        outbox = await Outbox(store).open(server.url)
        added = await outbox.add(server.url + "/hook", order_updates(5, 1))
        with structlog.testing.capture_logs() as logged:
            async with Dispatcher(store, settings):
                # Five first attempts open the breaker; every later request is a probe.
                await eventually(lambda: len(receiver.snapshot()) >= 5 + 20, timeout=30)
                switch.down = False
                await settled(store, len(added), timeout=30)

    probes_failed = len([r for r in receiver.snapshot() if r.reply.status == 500]) - 5
    assert probes_failed >= 20
    breaker_lines = [e["event"] for e in logged if "circuit breaker" in e["event"]]
    assert breaker_lines == ["circuit breaker opened", "circuit breaker closed"]
