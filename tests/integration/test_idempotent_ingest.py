"""``Idempotency-Key`` on ``POST /v2/order-updates``, over HTTP against a real service.

The order system that times out and sends the same request again gets the first answer again
(same status, same ``deliveryIds``) and nothing new is stored; a key reused for a different
request is a 409. Run on SQLite and on PostgreSQL, where two nodes share the keys.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import httpx
import pytest

from dhan_postback.service.app import create_app
from dhan_postback.service.node import ServiceNode
from dhan_postback.settings import ServiceSettings
from tests.helpers.servers import UvicornThread
from tests.helpers.service import ADMIN_KEY, Service, assert_error, running_service
from tests.helpers.updates import new_client_id, update


@pytest.fixture
def service(tmp_path: Path, service_db: str) -> Any:
    with running_service(tmp_path, db=service_db) as running:
        yield running


def post(service: Service, token: str, body: Any, key: str | bytes | None) -> httpx.Response:
    headers: dict[str, Any] = {"access-token": token}
    if key is not None:
        headers["Idempotency-Key"] = key
    return service.http.post("/v2/order-updates", headers=headers, json=body)


def stored_ids(service: Service, order_id: str) -> set[str]:
    response = service.http.get(
        "/v2/deliveries", params={"orderId": order_id, "limit": 1000}, headers=service.admin
    )
    assert response.status_code == 200, response.text
    return {delivery["deliveryId"] for delivery in response.json()["deliveries"]}


def three_updates(client_id: str, order_id: str) -> list[dict[str, Any]]:
    return [
        update(client_id, order_id, orderStatus=status)
        for status in ("TRANSIT", "PENDING", "TRADED")
    ]


def test_the_same_key_and_body_again_gets_the_first_answer_and_stores_nothing(
    service: Service,
) -> None:
    client_id = new_client_id()
    token = service.create_token(client_id)["accessToken"]
    body = three_updates(client_id, "order-a")
    first = post(service, token, body, "retry-me-1")
    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = post(service, token, body, "retry-me-1")
    assert again.status_code == first.status_code
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert stored_ids(service, "order-a") == set(first.json()["deliveryIds"])
    assert len(first.json()["deliveryIds"]) == 3


def test_the_same_key_with_another_body_is_a_409(service: Service) -> None:
    client_id = new_client_id()
    token = service.create_token(client_id)["accessToken"]
    assert post(service, token, update(client_id, "order-b"), "key-b").status_code == 202
    other = update(client_id, "order-b", orderStatus="TRADED")
    assert_error(post(service, token, other, "key-b"), 409, "Idempotency-Key", "different body")
    assert len(stored_ids(service, "order-b")) == 1


def test_keys_are_scoped_to_the_client(service: Service) -> None:
    answers = []
    for _ in range(2):
        client_id = new_client_id()
        token = service.create_token(client_id)["accessToken"]
        response = post(service, token, update(client_id, f"{client_id}-o"), "shared-key")
        assert response.status_code == 202, response.text
        assert "Idempotent-Replayed" not in response.headers
        answers.append(response.json()["deliveryIds"])
    assert answers[0] != answers[1]


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "caf\xe9".encode("latin-1"), b"tab\there"],
    ids=["empty", "256-characters", "not-ascii", "tab"],
)
def test_a_key_that_is_not_1_to_255_printable_ascii_is_a_400(
    service: Service, key: str | bytes
) -> None:
    client_id = new_client_id()
    token = service.create_token(client_id)["accessToken"]
    response = post(service, token, update(client_id, "order-c"), key)
    assert_error(response, 400, "Idempotency-Key")
    assert stored_ids(service, "order-c") == set()


def test_the_longest_key_and_every_printable_character_are_accepted(service: Service) -> None:
    client_id = new_client_id()
    token = service.create_token(client_id)["accessToken"]
    printable = "".join(chr(code) for code in range(0x21, 0x7F))
    for key in ("k" * 255, printable):
        body = update(client_id, f"order-{len(key)}")
        first = post(service, token, body, key)
        assert first.status_code == 202, first.text
        assert post(service, token, body, key).json() == first.json()


def test_a_refused_request_does_not_use_up_its_key(service: Service) -> None:
    client_id = new_client_id()
    token = service.create_token(client_id)["accessToken"]
    bad = update(client_id, "order-d", orderStatus="NOT_A_STATUS")
    assert post(service, token, bad, "key-d").status_code == 400
    good = post(service, token, update(client_id, "order-d"), "key-d")
    assert good.status_code == 202, good.text
    assert "Idempotent-Replayed" not in good.headers


def test_a_token_without_a_url_keeps_its_answer_too(service: Service) -> None:
    client_id = new_client_id()
    token = service.create_token(client_id, postback_url=None)["accessToken"]
    first = post(service, token, update(client_id, "order-e"), "key-e")
    assert first.status_code == 202 and first.json()["deliveryIds"] == []
    again = post(service, token, update(client_id, "order-e"), "key-e")
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_key_past_the_window_is_a_new_request(tmp_path: Path, service_db: str) -> None:
    with running_service(tmp_path, db=service_db, idempotency_window="0s") as service:
        client_id = new_client_id()
        token = service.create_token(client_id)["accessToken"]
        body = update(client_id, "order-f")
        first = post(service, token, body, "key-f")
        second = post(service, token, body, "key-f")
        assert second.status_code == 202
        assert "Idempotent-Replayed" not in second.headers
        assert second.json() != first.json()
        assert len(stored_ids(service, "order-f")) == 2


def test_keys_survive_a_restart(tmp_path: Path, service_db: str) -> None:
    client_id = new_client_id()
    body = update(client_id, "order-g")
    with running_service(tmp_path, db=service_db) as service:
        token = service.create_token(client_id)["accessToken"]
        first = post(service, token, body, "key-g")
        assert first.status_code == 202
    with running_service(tmp_path, db=service_db) as service:
        again = post(service, token, body, "key-g")
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert stored_ids(service, "order-g") == set(first.json()["deliveryIds"])


@pytest.mark.postgres
def test_two_nodes_answer_the_same_request_at_once_with_one_set_of_deliveries(
    pg_url: str,
) -> None:
    settings = ServiceSettings(db=pg_url, admin_key=ADMIN_KEY, allow_loopback=True)
    with (
        UvicornThread(create_app(ServiceNode(settings, dispatch=False))) as one,
        UvicornThread(create_app(ServiceNode(settings, dispatch=False))) as two,
        httpx.Client(timeout=30) as http,
    ):
        client_id = new_client_id()
        created = http.post(
            one.url + "/v2/access-tokens",
            headers={"admin-key": ADMIN_KEY},
            json={"dhanClientId": client_id, "postbackUrl": "http://127.0.0.1:8999/hook"},
        ).json()
        rounds = 20

        def send(node: str, number: int) -> httpx.Response:
            return http.post(
                node + "/v2/order-updates",
                headers={"access-token": created["accessToken"], "Idempotency-Key": f"k{number}"},
                json=three_updates(client_id, f"order-{number}"),
            )

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [
                (pool.submit(send, one.url, number), pool.submit(send, two.url, number))
                for number in range(rounds)
            ]
            pairs = [(a.result(), b.result()) for a, b in futures]
        for a, b in pairs:
            assert a.status_code == b.status_code == 202, (a.text, b.text)
            assert a.json() == b.json()
        replayed = [
            response.headers.get("Idempotent-Replayed") for pair in pairs for response in pair
        ]
        assert replayed.count("true") == rounds
        listed = http.get(
            one.url + "/v2/deliveries",
            params={"dhanClientId": client_id, "limit": 1000},
            headers={"admin-key": ADMIN_KEY},
        ).json()["deliveries"]
        assert len(listed) == 3 * rounds
