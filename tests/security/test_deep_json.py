"""Deeply nested JSON: a 400 in the broker's shape from the service and the receiver alike."""

from __future__ import annotations

import httpx

from dhan_postback.jsondepth import MAX_DEPTH
from dhan_postback.receiver import Receiver
from tests.helpers.service import Service, assert_error
from tests.helpers.updates import new_client_id, signed
from tests.security.conftest import RECEIVER_SECRET


def test_ingest_refuses_a_hundred_thousand_nested_brackets(service: Service) -> None:
    token = service.create_token(new_client_id())["accessToken"]
    response = service.http.post(
        "/v2/order-updates",
        content=b"[" * 100_000,
        headers={"access-token": token, "content-type": "application/json"},
    )
    assert_error(response, 400, f"deeper than {MAX_DEPTH} levels")


def test_admin_bodies_refuse_deep_nesting_too(service: Service) -> None:
    response = service.http.post(
        "/v2/access-tokens",
        content=b'{"dhanClientId":' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        headers={**service.admin, "content-type": "application/json"},
    )
    assert_error(response, 400, f"deeper than {MAX_DEPTH} levels")


def test_the_receiver_refuses_a_signed_body_nested_thirty_thousand_deep(
    receiver: tuple[Receiver, httpx.Client],
) -> None:
    app, client = receiver
    body = b"[" * 30_000 + b"]" * 30_000
    response = client.post("/", content=body, headers=signed(RECEIVER_SECRET, body, "msg_deep"))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["errorCode"] == "DH-905"
    assert f"deeper than {MAX_DEPTH} levels" in response.json()["errorMessage"]
    assert [entry.reason for entry in app.store.quarantined()] == [response.json()["errorMessage"]]
