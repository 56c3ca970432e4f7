"""Pausing and resuming an endpoint over HTTP, with a real receiver, on SQLite and PostgreSQL.

A real service (uvicorn on loopback, its node sending the outbox) delivers to a recording
receiver. A paused endpoint gets nothing while another endpoint on the same receiver gets
its postbacks (so the dispatcher is demonstrably at work); on resume, everything that waited
arrives, each order's updates in the order they were ingested.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.postgres import PostgresServer

from tests.helpers.receivers import OK, Received, RecordingReceiver, Reply
from tests.helpers.servers import UvicornThread
from tests.helpers.service import Service, assert_error, running_service
from tests.helpers.updates import new_client_id, update
from tests.helpers.waiting import wait_until

ORDERS = 3
UPDATES_PER_ORDER = 3


@pytest.fixture
def receiver() -> Iterator[tuple[RecordingReceiver, str]]:
    recording = RecordingReceiver()
    with UvicornThread(recording.app) as server:
        yield recording, server.url


@pytest.fixture
def service(service_db: str, tmp_path: Path) -> Iterator[Service]:
    with running_service(
        tmp_path, db=service_db, dispatch=True, retry_schedule="0s,50ms,100ms", timeout=5.0
    ) as running:
        yield running


def updates_of(client_id: str) -> list[dict[str, Any]]:
    """ORDERS orders with UPDATES_PER_ORDER updates each, interleaved by order; each update
    names its place in its order in ``correlationId``."""
    return [
        update(client_id, f"{client_id}-{order}", correlationId=f"{order}-{step}")
        for step in range(UPDATES_PER_ORDER)
        for order in range(ORDERS)
    ]


def test_a_paused_endpoint_gets_nothing_and_everything_in_order_on_resume(
    service: Service, receiver: tuple[RecordingReceiver, str]
) -> None:
    recording, url = receiver
    paused_client, other_client = new_client_id(), new_client_id()
    paused = service.create_token(paused_client, postback_url=f"{url}/paused")
    other = service.create_token(other_client, postback_url=f"{url}/other")

    answer = service.admin_json("POST", f"/v2/endpoints/{paused['endpointId']}/pause")
    assert (answer["endpointId"], answer["paused"]) == (paused["endpointId"], True)
    ids = service.delivery_ids(paused["accessToken"], updates_of(paused_client))
    service.delivery_ids(other["accessToken"], [update(other_client)])

    # The other endpoint's postback arrives: the dispatcher runs, and leaves the paused alone.
    wait_until(lambda: any(r.path == "/other" for r in recording.accepted()))
    shown = service.http.get(f"/v2/endpoints/{paused['endpointId']}", headers=service.admin)
    assert (shown.json()["paused"], shown.json()["backlog"]) == (True, len(ids))
    assert [r.path for r in recording.snapshot()] == ["/other"]

    resumed = service.admin_json("POST", f"/v2/endpoints/{paused['endpointId']}/resume")
    assert resumed["paused"] is False
    wait_until(lambda: len([r for r in recording.accepted() if r.path == "/paused"]) == len(ids))

    arrived = [r for r in recording.snapshot() if r.path == "/paused"]
    assert sorted(r.webhook_id for r in arrived) == sorted(ids)  # each once, none retried
    for order in range(ORDERS):
        steps = [
            json.loads(r.body)["correlationId"]
            for r in arrived
            if json.loads(r.body)["orderId"] == f"{paused_client}-{order}"
        ]
        assert steps == [f"{order}-{step}" for step in range(UPDATES_PER_ORDER)]


def test_pausing_and_resuming_twice_answers_the_same(service: Service) -> None:
    token = service.create_token()
    path = f"/v2/endpoints/{token['endpointId']}"
    assert service.admin_json("POST", path + "/pause")["paused"] is True
    assert service.admin_json("POST", path + "/pause")["paused"] is True
    assert service.admin_json("POST", path + "/resume")["paused"] is False
    assert service.admin_json("POST", path + "/resume")["paused"] is False


def test_pausing_an_unknown_endpoint_is_404(service: Service) -> None:
    for action in ("pause", "resume"):
        response = service.http.post(f"/v2/endpoints/ep_nobody/{action}", headers=service.admin)
        assert_error(response, 404, "no such endpoint")


def test_pausing_needs_the_admin_key(service: Service) -> None:
    token = service.create_token()
    as_token = {"access-token": token["accessToken"]}
    for action in ("pause", "resume"):
        path = f"/v2/endpoints/{token['endpointId']}/{action}"
        assert_error(service.http.post(path, headers=as_token), 401)
        assert_error(service.http.post(path), 401)


def test_a_post_under_way_finishes_and_the_waiting_ones_wait(
    service_db: str, tmp_path: Path, receiver: tuple[RecordingReceiver, str]
) -> None:
    recording, url = receiver
    arrived, release = threading.Event(), threading.Event()

    def held(_: Received) -> Reply:
        arrived.set()
        release.wait(timeout=60)  # the answer waits until the test lets it go
        return OK

    slow = RecordingReceiver(held)
    with (
        UvicornThread(slow.app) as slow_server,
        running_service(
            tmp_path, db=service_db, dispatch=True, max_in_flight_per_url=1, timeout=10.0
        ) as service,
    ):
        paused_client, other_client = new_client_id(), new_client_id()
        paused = service.create_token(paused_client, postback_url=slow_server.url + "/slow")
        other = service.create_token(other_client, postback_url=f"{url}/other")
        ids = service.delivery_ids(paused["accessToken"], updates_of(paused_client))
        wait_until(arrived.is_set)  # one POST under way, the rest waiting in its lane

        service.admin_json("POST", f"/v2/endpoints/{paused['endpointId']}/pause")
        release.set()
        wait_until(lambda: len(slow.snapshot()) == 1)
        [first] = slow.snapshot()
        delivered = f"/v2/deliveries/{first.webhook_id}"
        wait_until(
            lambda: (
                service.http.get(delivered, headers=service.admin).json()["status"] == "delivered"
            )
        )
        service.delivery_ids(other["accessToken"], [update(other_client)])
        wait_until(lambda: any(r.path == "/other" for r in recording.accepted()))

        assert len(slow.snapshot()) == 1
        shown = service.http.get(f"/v2/endpoints/{paused['endpointId']}", headers=service.admin)
        assert shown.json()["backlog"] == len(ids) - 1


@pytest.mark.postgres
def test_a_pause_on_one_node_holds_on_the_other(
    pg_server: PostgresServer, tmp_path: Path, receiver: tuple[RecordingReceiver, str]
) -> None:
    recording, url = receiver
    db = pg_server.new_database()
    options: dict[str, Any] = {"db": db, "dispatch": True, "retry_schedule": "0s,50ms,100ms"}
    with (
        running_service(tmp_path / "one", **options) as one,
        running_service(tmp_path / "two", **options) as two,
    ):
        paused_client, other_client = new_client_id(), new_client_id()
        paused = one.create_token(paused_client, postback_url=f"{url}/paused")
        other = one.create_token(other_client, postback_url=f"{url}/other")
        one.admin_json("POST", f"/v2/endpoints/{paused['endpointId']}/pause")
        ids = two.delivery_ids(paused["accessToken"], updates_of(paused_client))
        two.delivery_ids(other["accessToken"], [update(other_client)])
        wait_until(lambda: any(r.path == "/other" for r in recording.accepted()))
        assert [r.path for r in recording.snapshot()] == ["/other"]

        two.admin_json("POST", f"/v2/endpoints/{paused['endpointId']}/resume")
        wait_until(
            lambda: len([r for r in recording.accepted() if r.path == "/paused"]) == len(ids)
        )
