"""``POST /v2/order-updates`` on its raw ASGI route (service/ingest_endpoint.py), over loopback.

The route skips Starlette, so everything Starlette did for it is specified here: each refusal
in the broker's shape with its status (and the same answer through Starlette's route, when the
app is mounted below a root path), the other methods on the path still 405, wrong tokens
counted against the address, refusals counted in the metrics, a bug a clean 500, a client that
leaves mid-body costing nothing, and no 2xx without a commit.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.routing import Mount

from dhan_postback.errors import StoreUnavailable
from dhan_postback.service.app import create_app
from dhan_postback.service.node import ServiceNode
from dhan_postback.service.store import NewDelivery
from dhan_postback.service.store.sqlite import SQLiteStore
from dhan_postback.settings import ServiceSettings
from tests.helpers.servers import UvicornThread
from tests.helpers.service import ADMIN_KEY, Service, assert_error, running_service
from tests.helpers.updates import new_client_id, update

MAX_BODY = 4096


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    directory = tmp_path_factory.mktemp("ingest")
    with running_service(
        directory, max_batch=3, max_body_bytes=MAX_BODY, auth_failures=10_000
    ) as running:
        yield running


@pytest.fixture(scope="module")
def mounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The same service app mounted at ``/svc`` of another Starlette app."""
    directory = tmp_path_factory.mktemp("mounted")
    settings = ServiceSettings(
        db=f"sqlite:///{directory / 'service.db'}",
        admin_key=ADMIN_KEY,
        allow_loopback=True,
        max_batch=3,
        max_body_bytes=MAX_BODY,
        auth_failures=10_000,
    )
    node = ServiceNode(settings, dispatch=False)
    outer = Starlette(routes=[Mount("/svc", app=create_app(node))], lifespan=node.lifespan)
    with UvicornThread(outer) as server, httpx.Client(base_url=server.url + "/svc") as http:
        yield Service(server.url + "/svc", settings.db, http)


def _refusals(client_id: str) -> list[Any]:
    """(name, body, extra headers, status, words of the message) of each kind of refusal."""
    own = update(client_id, "o-1")
    json_type = {"content-type": "application/json"}
    return [
        ("malformed JSON", b'{"orderId": ', json_type, 400, ["not valid JSON"]),
        ("wrong type", {**own, "quantity": "5"}, {}, 400, ["quantity"]),
        ("unknown enum value", {**own, "orderStatus": "LOST"}, {}, 400, ["orderStatus"]),
        ("unknown field", {**own, "surprise": 1}, {}, 400, ["surprise"]),
        ("oversize body", {**own, "pad": "x" * MAX_BODY}, {}, 413, [str(MAX_BODY)]),
        ("another client", update(new_client_id(), "o-2"), {}, 403, ["dhanClientId"]),
        ("empty array", [], {}, 400, ["empty"]),
        ("too many", [own] * 4, {}, 400, ["4 updates", "at most 3"]),
        ("not JSON media", b"a=1", {"content-type": "text/plain"}, 415, ["text/plain"]),
        ("a number", 3, {}, 400, ["number"]),
    ]


def _post(http: httpx.Client, token: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(
        "/v2/order-updates",
        content=content,
        headers={"access-token": token, "content-type": "application/json", **headers},
    )


@pytest.mark.parametrize("case", range(len(_refusals("x"))), ids=[r[0] for r in _refusals("x")])
def test_each_refusal_is_in_the_broker_shape_and_the_same_through_starlettes_route(
    service: Service, mounted: Service, case: int
) -> None:
    answers = []
    for running in (service, mounted):
        created = running.create_token()
        _, body, headers, status, words = _refusals(created["dhanClientId"])[case]
        response = _post(running.http, created["accessToken"], body, headers)
        assert_error(response, status, *words)
        answers.append((response.status_code, response.json()["errorCode"]))
    assert answers[0] == answers[1]


def test_the_mounted_route_commits_an_update_too(mounted: Service) -> None:
    created = mounted.create_token()
    ids = mounted.delivery_ids(created["accessToken"], update(created["dhanClientId"], "o-9"))
    listed = mounted.http.get("/v2/deliveries", headers={"access-token": created["accessToken"]})
    assert [d["deliveryId"] for d in listed.json()["deliveries"]] == ids


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "PATCH", "DELETE"])
def test_other_methods_on_the_path_are_405_naming_post(service: Service, method: str) -> None:
    response = service.http.request(method, "/v2/order-updates")
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    if method != "HEAD":
        assert_error(response, 405, method)


def test_an_idempotent_replay_is_the_first_answer_marked_replayed(service: Service) -> None:
    created = service.create_token()
    headers = {"access-token": created["accessToken"], "idempotency-key": "k-1"}
    body = update(created["dhanClientId"], "o-3")
    first = service.http.post("/v2/order-updates", headers=headers, json=body)
    again = service.http.post("/v2/order-updates", headers=headers, json=body)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    other = service.http.post("/v2/order-updates", headers=headers, json={**body, "orderId": "o-4"})
    assert_error(other, 409, "Idempotency-Key")


def test_wrong_tokens_on_ingest_use_up_the_address_budget(tmp_path: Path) -> None:
    with running_service(tmp_path, auth_failures=3) as running:
        answers = [
            running.http.post(
                "/v2/order-updates", headers={"access-token": f"guess-{n}"}, json=update()
            )
            for n in range(5)
        ]
        without = running.http.post("/v2/order-updates", json=update())
    assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]
    assert_error(answers[-1], 429, "too many wrong credentials")
    assert int(answers[-1].headers["retry-after"]) >= 1
    assert_error(without, 401)  # no credential offered: not a guess, not throttled


def _metric(service: Service, name: str) -> float:
    lines = service.http.get("/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(name))


def test_refusals_and_ingested_updates_are_counted(service: Service) -> None:
    created = service.create_token()
    rejected = 'dhan_postback_ingest_rejected_total{error_code="DH-905"}'
    before = (_metric(service, rejected), _metric(service, "dhan_postback_updates_ingested_total"))
    _post(service.http, created["accessToken"], b"{", {})
    service.delivery_ids(created["accessToken"], update(created["dhanClientId"], "o-5"))
    after = (_metric(service, rejected), _metric(service, "dhan_postback_updates_ingested_total"))
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


class _FailingStore(SQLiteStore):
    """A store whose ingest commit fails: ``error`` is what it raises."""

    error: Exception = RuntimeError("boom with a secret inside")

    async def enqueue(self, deliveries: Sequence[NewDelivery], **options: Any) -> Any:
        raise self.error


async def test_a_bug_is_a_clean_500_logged_by_route_without_the_request(tmp_path: Path) -> None:
    store = _FailingStore(f"sqlite:///{tmp_path / 'failing.db'}")
    try:
        with running_service(tmp_path, store=store) as running:
            created = running.create_token()
            with structlog.testing.capture_logs() as events:
                response = running.ingest(
                    created["accessToken"], update(created["dhanClientId"], "o-6")
                )
    finally:
        await store.close()
    body = assert_error(response, 500)
    assert body["errorMessage"] == "internal error"
    errors = [event for event in events if event["event"] == "unexpected error"]
    assert errors == [
        {
            "event": "unexpected error",
            "log_level": "error",
            "method": "POST",
            "route": "/v2/order-updates",
            "error_type": "RuntimeError",
        }
    ]
    assert created["accessToken"] not in repr(events)


async def test_a_commit_that_fails_is_a_503_never_a_202(tmp_path: Path) -> None:
    store = _FailingStore(f"sqlite:///{tmp_path / 'down.db'}")
    store.error = StoreUnavailable("the outbox is down")
    try:
        with running_service(tmp_path, store=store) as running:
            created = running.create_token()
            response = running.ingest(
                created["accessToken"], update(created["dhanClientId"], "o-7")
            )
    finally:
        await store.close()
    assert_error(response, 503)


def test_a_client_that_leaves_mid_body_gets_nothing_and_the_next_is_served(
    service: Service,
) -> None:
    created = service.create_token()
    host, port = service.url.removeprefix("http://").split(":")
    head = (
        "POST /v2/order-updates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"access-token: {created['accessToken']}\r\nContent-Length: 1000\r\n\r\n"
    )
    with structlog.testing.capture_logs() as events:
        with contextlib.closing(socket.create_connection((host, int(port)))) as sock:
            sock.sendall(head.encode() + b'{"orderId": ')
        served = service.ingest(created["accessToken"], update(created["dhanClientId"], "o-8"))
    assert served.status_code == 202
    assert not [event for event in events if event["event"] == "unexpected error"]
    listed = service.http.get("/v2/deliveries", headers={"access-token": created["accessToken"]})
    assert [d["orderId"] for d in listed.json()["deliveries"]] == ["o-8"]
