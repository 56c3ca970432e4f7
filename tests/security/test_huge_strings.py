"""Strings and updates larger than any receiver should take: refused at ingest, naming why."""

from __future__ import annotations

import pytest

from dhan_postback import payload
from tests.helpers.service import Service, assert_error
from tests.helpers.updates import new_client_id, update


@pytest.mark.parametrize("field", ["tradingSymbol", "correlationId"])
def test_ingest_refuses_a_multi_megabyte_string_naming_the_field(
    service: Service, field: str
) -> None:
    client = new_client_id()
    token = service.create_token(client)["accessToken"]
    response = service.ingest(token, update(client, **{field: "A" * 3_000_000}))
    assert_error(response, 400, f"`{field}`", f"length <= {payload.MAX_ID_LENGTH}")


def test_ingest_refuses_an_update_too_large_as_sent(service: Service) -> None:
    client = new_client_id()
    token = service.create_token(client)["accessToken"]
    escaped = "\x01" * payload.MAX_ID_LENGTH  # six bytes each on the wire
    big = update(
        client,
        correlationId=escaped,
        tradingSymbol=escaped,
        omsErrorCode=escaped,
        algoId=escaped,
        omsErrorDescription="\x01" * payload.MAX_TEXT_LENGTH,
    )
    response = service.ingest(token, [update(client), big])
    assert_error(response, 400, "[1]", f"at most {payload.MAX_UPDATE_BYTES}")


def test_nothing_of_a_refused_batch_is_stored(service: Service) -> None:
    client = new_client_id()
    token = service.create_token(client)["accessToken"]
    response = service.ingest(token, [update(client), update(client, tradingSymbol="A" * 65)])
    assert_error(response, 400, "tradingSymbol")
    listed = service.http.get("/v2/deliveries", headers={"access-token": token})
    assert listed.json()["deliveries"] == []
