"""Integers no receiver can hold: refused at ingest, stored (never a 5xx) by the receiver."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from dhan_postback.receiver import Receiver
from tests.helpers.service import Service, assert_error
from tests.helpers.updates import new_client_id, signed, update, update_body
from tests.security.conftest import RECEIVER_SECRET


@pytest.mark.parametrize("value", [2**63, 10**30, 2**53])
def test_ingest_refuses_an_integer_past_two_to_the_53_naming_the_field(
    service: Service, value: int
) -> None:
    client = new_client_id()
    token = service.create_token(client)["accessToken"]
    response = service.ingest(token, update(client, quantity=value, filled_qty=0))
    assert_error(response, 400, "quantity", "9007199254740991")


def test_ingest_accepts_the_largest_safe_integer(service: Service) -> None:
    client = new_client_id()
    token = service.create_token(client)["accessToken"]
    response = service.ingest(token, update(client, quantity=2**53 - 1))
    assert response.status_code == 202, response.text


def test_the_receiver_stores_an_integer_too_large_for_sqlite(
    receiver: tuple[Receiver, httpx.Client],
) -> None:
    app, client = receiver
    body = update_body("9000000001", quantity=2**63, filled_qty=10**30)
    response = client.post("/", content=body, headers=signed(RECEIVER_SECRET, body, "msg_big"))
    assert response.status_code == 200, response.text
    again = client.post("/", content=body, headers=signed(RECEIVER_SECRET, body, "msg_big"))
    assert again.json() == {"status": "duplicate"}
    stored = app.store.history("9000000001")
    assert [msgspec.json.decode(row.body)["quantity"] for row in stored] == [2**63]
